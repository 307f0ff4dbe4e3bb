module finepay/sandbox

go 1.26
