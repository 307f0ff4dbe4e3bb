module finepay/internet-gateway

go 1.26
