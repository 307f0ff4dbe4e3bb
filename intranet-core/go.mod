module finepay/intranet-core

go 1.26
