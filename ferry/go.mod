module finepay/ferry

go 1.26
