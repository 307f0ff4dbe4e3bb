package ereceiptsim

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
)

// The layout file (版式文件) of a receipt is a one-page PDF 1.4 written here by hand: ASCII
// labels in the standard Helvetica fonts (never embedded: every PDF reader has them), and the
// Chinese values (payer, unit and item names) in the non-embedded Adobe-GB1 font STSong-Light
// with the UniGB-UCS2-H encoding, which PDF readers substitute with a local Chinese font. No font
// file is embedded, so the file stays a few kilobytes; a reader without a Chinese font shows
// those values as blanks, and every number is in ASCII. The content stream is Flate-compressed.

// layoutLine is one line of text at (x, y) in points from the bottom left.
type layoutLine struct {
	x, y float64
	font string // F1 Helvetica, F2 Helvetica-Bold, F3 STSong-Light (UCS-2)
	size float64
	text string
}

// Layout renders the receipt r as a PDF. checkURL, when set, is printed as where to verify.
func Layout(r Receipt, checkURL string) ([]byte, error) {
	var ls []layoutLine
	y := 392.0
	add := func(x float64, font string, size float64, text string) {
		ls = append(ls, layoutLine{x, y, font, size, text})
	}
	next := func(d float64) { y -= d }

	title := "Non-tax Revenue General Payment E-Receipt"
	if r.Kind == KindRed {
		title = "RED E-Receipt (reversal) - Non-tax Revenue General Payment"
	}
	add(40, "F2", 14, title)
	next(18)
	add(40, "F3", 11, "黑龙江省非税收入一般缴款书（电子）")
	if r.Kind == KindRed {
		add(300, "F3", 11, "红字票据")
	}
	next(22)
	add(40, "F1", 10, "Receipt code: "+r.ReceiptCode)
	add(200, "F1", 10, "Receipt number: "+r.ReceiptNo)
	add(390, "F1", 10, "Check code: "+r.CheckCode)
	next(15)
	add(40, "F1", 10, "Issued: "+r.IssuedAt)
	add(300, "F1", 10, "Paid: "+r.PaidAt)
	next(15)
	if r.Kind == KindRed {
		add(40, "F1", 10, "Reverses receipt code "+r.OriginalCode+" number "+r.OriginalNo)
		next(15)
	}
	add(40, "F1", 10, "Payer:")
	add(110, "F3", 10, r.PayerMasked)
	next(15)
	add(40, "F1", 10, "Issuing unit: "+r.UnitCode)
	add(180, "F3", 10, r.UnitName)
	next(15)
	add(40, "F1", 10, "Form no: "+r.FormNo)
	add(240, "F1", 10, "Payment code: "+r.PayCode)
	next(15)
	add(40, "F1", 10, "Order no: "+r.OrderNo)
	next(20)
	add(40, "F2", 10, "Item code")
	add(130, "F2", 10, "Item")
	add(420, "F2", 10, "Amount (CNY)")
	for _, it := range r.Items {
		next(15)
		add(40, "F1", 10, it.ItemCode)
		add(130, "F3", 10, it.ItemName)
		add(420, "F1", 10, yuan(it.Amount, r.Kind))
	}
	next(18)
	add(40, "F2", 11, "Total (CNY)")
	add(420, "F2", 11, yuan(r.Amount, r.Kind))
	next(24)
	add(40, "F1", 7, "Issuing unit signature (SM2/SM3, base64 DER): "+r.UnitSignature)
	next(11)
	add(40, "F1", 7, "Finance supervision seal (SM2/SM3, base64 DER): "+r.Seal)
	next(16)
	if checkURL != "" {
		add(40, "F1", 9, "Verify with code, number, check code, date and amount at "+checkURL)
	}
	return renderPDF(ls, 595, 420)
}

// yuan formats fen as 230.00 (-230.00 on a red receipt).
func yuan(fen int64, kind string) string {
	s := fmt.Sprintf("%d.%02d", fen/100, fen%100)
	if kind == KindRed {
		s = "-" + s
	}
	return s
}

// pdfString escapes an ASCII string for a PDF literal; other characters become '?'.
func pdfString(s string) string {
	var b strings.Builder
	b.WriteByte('(')
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	b.WriteByte(')')
	return b.String()
}

// pdfUCS2 is a hex string of s in UTF-16BE, for the UniGB-UCS2-H font.
func pdfUCS2(s string) string {
	var b strings.Builder
	b.WriteByte('<')
	for _, u := range utf16.Encode([]rune(s)) {
		fmt.Fprintf(&b, "%04X", u)
	}
	b.WriteByte('>')
	return b.String()
}

func renderPDF(lines []layoutLine, width, height int) ([]byte, error) {
	var content bytes.Buffer
	// A thin frame, then the text.
	fmt.Fprintf(&content, "0.5 w 30 30 %d %d re S\n", width-60, height-30-10)
	for _, l := range lines {
		if l.text == "" {
			continue
		}
		s := pdfString(l.text)
		if l.font == "F3" {
			s = pdfUCS2(l.text)
		}
		fmt.Fprintf(&content, "BT /%s %s Tf %s %s Td %s Tj ET\n", l.font, num(l.size), num(l.x), num(l.y), s)
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	if _, err := zw.Write(content.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 5 0 R /F2 6 0 R /F3 7 0 R >> >> /Contents 4 0 R >>", width, height),
		fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream", z.Len(), z.Bytes()),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
		"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H /DescendantFonts [8 0 R] >>",
		"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> /FontDescriptor 9 0 R /DW 1000 >>",
		"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>",
	}
	var out bytes.Buffer
	out.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := out.Len()
	fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&out, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&out, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return out.Bytes(), nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
