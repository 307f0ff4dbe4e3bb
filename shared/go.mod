module finepay/shared

go 1.26
