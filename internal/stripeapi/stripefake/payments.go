package stripefake

import "strings"

// A paid one-off session's payment, as Checkout leaves it: a succeeded
// payment intent whose latest_charge is a charge with a receipt_url. The
// service reads the receipt by expanding payment_intent.latest_charge on
// the session.

// ChargeID is the ID PutSession gives the charge of the payment intent
// paymentIntentID.
func ChargeID(paymentIntentID string) string {
	return "ch_" + strings.TrimPrefix(paymentIntentID, "pi_")
}

// ReceiptURL is the receipt_url of that charge, on Stripe's receipt host
// as Stripe's are.
func ReceiptURL(paymentIntentID string) string {
	return "https://pay.stripe.com/receipts/payment/fake_" + strings.TrimPrefix(paymentIntentID, "pi_")
}

// startPayment stores the payment intent and charge of a paid or free
// complete payment-mode session s (session is its rendered object), unless
// the test stored its own payment intent under that ID already. Stripe
// makes no charge for a session that cost nothing, so neither does this.
func (f *Fake) startPayment(s Session, session map[string]any) {
	if withDefault(s.Mode, "payment") != "payment" || s.PaymentIntent == "" ||
		withDefault(s.PaymentStatus, "paid") != "paid" || withDefault(s.Status, "complete") != "complete" {
		return
	}
	if _, _, ok := f.lookup(KindPaymentIntent, s.PaymentIntent); ok {
		return
	}
	amount, currency, created := session["amount_total"], session["currency"], session["created"]
	chargeID := ChargeID(s.PaymentIntent)
	if _, _, ok := f.lookup(KindCharge, chargeID); !ok {
		f.PutObject(KindCharge, chargeID, map[string]any{
			"amount": amount, "amount_captured": amount, "amount_refunded": 0, "captured": true, "paid": true,
			"refunded": false, "status": "succeeded", "currency": currency, "created": created,
			"payment_intent": s.PaymentIntent, "customer": nullable(s.Customer),
			"receipt_url": ReceiptURL(s.PaymentIntent), "receipt_email": nullable(s.CustomerEmail),
		})
	}
	f.PutObject(KindPaymentIntent, s.PaymentIntent, map[string]any{
		"amount": amount, "amount_received": amount, "currency": currency, "created": created,
		"status": "succeeded", "latest_charge": chargeID, "customer": nullable(s.Customer),
		"capture_method": "automatic", "confirmation_method": "automatic", "payment_method_types": []any{"card"},
	})
}
