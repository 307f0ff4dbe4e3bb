package ereceiptsim

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestE1LayoutIsAWellFormedPDF checks the layout file's structure as a PDF reader reads it: the
// cross-reference table points at every object, the trailer at the table, and the content
// stream inflates to the receipt's elements (ASCII in Helvetica, Chinese as UCS-2 hex).
func TestE1LayoutIsAWellFormedPDF(t *testing.T) {
	for _, kind := range []string{KindBlue, KindRed} {
		t.Run(kind, func(t *testing.T) {
			r := Receipt{Kind: kind, ReceiptCode: "23010126", ReceiptNo: "0000000042", CheckCode: "a1B2c3",
				IssuedAt: "2026-11-27T10:05:00+08:00", PaidAt: "2026-11-27T10:04:00+08:00", Amount: 20600, PayerMasked: "张*",
				UnitCode: "230100", UnitName: "哈尔滨市公安局交通警察支队", FormNo: "23010020261127000001", PayCode: "1",
				OrderNo: "FP(1)", Items: []DataItem{{"103050101", "罚没", 20000}, {"103050102", "加处罚款", 600}},
				UnitSignature: "MEUC", Seal: "MEQC", OriginalCode: "23010126", OriginalNo: "0000000041"}
			pdf, err := Layout(r, "http://127.0.0.1:8070/ereceipt/check")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pdf, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) || len(pdf) > 8<<10 {
				t.Fatalf("not a PDF of a few KB: %d bytes", len(pdf))
			}
			m := regexp.MustCompile(`startxref\n(\d+)\n%%EOF\n$`).FindSubmatch(pdf)
			if m == nil {
				t.Fatal("no startxref")
			}
			xref, _ := strconv.Atoi(string(m[1]))
			if !bytes.HasPrefix(pdf[xref:], []byte("xref\n0 10\n0000000000 65535 f \n")) {
				t.Fatalf("startxref %d does not point at the table: %.30q", xref, pdf[xref:])
			}
			lines := strings.Split(string(pdf[xref:]), "\n")[3:12]
			for i, l := range lines {
				off, _ := strconv.Atoi(l[:10])
				if want := fmt.Sprintf("%d 0 obj\n", i+1); !bytes.HasPrefix(pdf[off:], []byte(want)) {
					t.Errorf("object %d: offset %d points at %.12q", i+1, off, pdf[off:])
				}
			}
			i := bytes.Index(pdf, []byte("stream\n"))
			j := bytes.Index(pdf, []byte("\nendstream"))
			zr, err := zlib.NewReader(bytes.NewReader(pdf[i+7 : j]))
			if err != nil {
				t.Fatal(err)
			}
			content, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			length := regexp.MustCompile(`/Length (\d+)`).FindSubmatch(pdf)
			if n, _ := strconv.Atoi(string(length[1])); n != j-(i+7) {
				t.Errorf("/Length %d, stream of %d bytes", n, j-(i+7))
			}
			for _, want := range []string{"(Receipt code: 23010126)", "(Receipt number: 0000000042)", "(Check code: a1B2c3)",
				"(206.00)", "(Order no: FP\\(1\\))", pdfUCS2("哈尔滨市公安局交通警察支队"), "/F3 "} {
				if kind == KindRed && want == "(206.00)" {
					want = "(-206.00)"
				}
				if !bytes.Contains(content, []byte(want)) {
					t.Errorf("content lacks %s", want)
				}
			}
			if kind == KindRed && !bytes.Contains(content, []byte("Reverses receipt code 23010126 number 0000000041")) {
				t.Error("the red receipt does not name the original")
			}
		})
	}
}
