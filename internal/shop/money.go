package shop

import (
	"strconv"
	"strings"
)

// Stripe gives every amount in the currency's minor unit: cents of a
// dollar, but whole yen, and thousandths of a Kuwaiti dinar. These lists
// are Stripe's (https://docs.stripe.com/currencies): every other currency
// has two decimals in the API, the special cases (ISK, HUF, TWD, UGX's
// former two decimals) included, where Stripe keeps two decimals for
// compatibility.
var (
	zeroDecimal = map[string]bool{
		"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true, "krw": true, "mga": true,
		"pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true,
	}
	threeDecimal = map[string]bool{"bhd": true, "jod": true, "kwd": true, "omr": true, "tnd": true}
)

// symbols are the currencies written with a sign before the amount; any
// other is written with its code ("CHF 12.00"), which no reader mistakes.
// A sign several currencies share ($, ¥) is kept for the one most buyers
// mean by it, the others get a prefix of their own.
var symbols = map[string]string{
	"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩",
	"cad": "CA$", "aud": "A$", "nzd": "NZ$", "hkd": "HK$", "sgd": "S$", "mxn": "MX$", "brl": "R$", "cny": "CN¥",
}

// Decimals is how many decimals an amount of currency (an ISO code, in any
// case) has in Stripe's API: 0, 2 or 3.
func Decimals(currency string) int {
	c := strings.ToLower(currency)
	switch {
	case zeroDecimal[c]:
		return 0
	case threeDecimal[c]:
		return 3
	}
	return 2
}

// FormatAmount writes amount, in currency's minor unit as Stripe gives it,
// for a buyer: "$12.00", "€1,250.50", "¥500", "KWD 1.500". An empty
// currency gives "".
func FormatAmount(amount int64, currency string) string {
	c := strings.ToLower(strings.TrimSpace(currency))
	if c == "" {
		return ""
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	digits := Decimals(c)
	scale := int64(1)
	for range digits {
		scale *= 10
	}
	number := groupThousands(strconv.FormatInt(amount/scale, 10))
	if digits > 0 {
		frac := strconv.FormatInt(amount%scale, 10)
		number += "." + strings.Repeat("0", digits-len(frac)) + frac
	}
	if s, ok := symbols[c]; ok {
		return sign + s + number
	}
	return sign + strings.ToUpper(c) + " " + number
}

// FormatUnits writes quantity units of unitAmount: "$5.00 × 3", or
// "$5.00" for one.
func FormatUnits(unitAmount int64, quantity int, currency string) string {
	text := FormatAmount(unitAmount, currency)
	if text == "" || quantity == 1 {
		return text
	}
	return text + " × " + strconv.Itoa(quantity)
}

// groupThousands puts a comma between each group of three digits.
func groupThousands(digits string) string {
	if len(digits) <= 3 {
		return digits
	}
	var b strings.Builder
	head := len(digits) % 3
	if head > 0 {
		b.WriteString(digits[:head])
	}
	for i := head; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}
