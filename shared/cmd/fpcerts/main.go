// Command fpcerts creates the FinePay development PKI.
//
//	fpcerts -dir DIR [-force]
//
// It writes, into DIR:
//
//   - ca.pem, ca.key: the SM2 development CA ("FinePay Dev CA");
//   - NODE-sign.pem/.key and NODE-enc.pem/.key for each node (gateway, core,
//     ferry-dmz, ferry-intranet, sandbox): SM2 signing and encryption
//     certificates for GM TLS and message signatures, with DNS names NODE and
//     localhost and IP addresses 127.0.0.1 and ::1;
//   - wechat-merchant.key/.pem and wechat-platform.key/.pem: RSA 2048 keys with
//     self-signed certificates standing in for the WeChat Pay merchant API
//     certificate and the WeChat Pay platform certificate (their serial
//     numbers, printed as upper-case hex, are the serial_no values);
//   - wechat-apiv3.key: a 32-character API v3 key;
//   - alipay-app.key/.pem and alipay-platform.key/.pem: RSA 2048 keys with
//     self-signed certificates for the Alipay merchant application (signs
//     requests) and Alipay (signs answers and notifications);
//   - unionpay-root.pem and unionpay-middle.pem: a UnionPay root and middle CA;
//     unionpay-sign.key/.pem: UnionPay's signing key and certificate (the
//     signPubKeyCert of answers and notifications) issued by the middle CA;
//     unionpay-merchant.key/.pem: the merchant's signing key and certificate
//     (its decimal serial number is the certId of requests);
//   - unit-sign.key/.pem: the e-receipt issuing unit's SM2 signing key and
//     certificate, issued by the CA (signs the data of every e-receipt);
//   - lookup.key: 32 random bytes in hex, shared by the core and the gateway,
//     keying the hash by which a payer finds a bill by decision number and plate;
//   - README.txt describing these files.
//
// All certificates are valid for two years. Keys are written 0600,
// certificates 0644. Everything is first written into a DIR/.tmp-* directory
// and then renamed into place with ca.pem last, so that an interrupted run
// never leaves a DIR/ca.pem beside a partial PKI. When DIR/ca.pem exists and
// -force is not given, fpcerts says so and exits 0 without changing
// anything, so it can run on every `make demo`; only the key sets (alipay-*,
// unionpay-*, unit-sign.*) missing from such a PKI, made before they were
// supported, are added, each set whole (unit-sign.* issued by the existing
// ca.key).
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	dir := flag.String("dir", "", "directory to create the development PKI in (required)")
	force := flag.Bool("force", false, "replace an existing PKI in -dir")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: fpcerts -dir DIR [-force]\n\nCreates the FinePay development PKI in DIR.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dir, *force, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fpcerts:", err)
		os.Exit(1)
	}
}
