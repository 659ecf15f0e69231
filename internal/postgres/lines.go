package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"fulfiller/internal/order"
)

// amountOf is the session's total to store: none without a currency, which
// Stripe always sends with an amount.
func amountOf(d order.SessionDetails) *int64 {
	if d.Currency == "" {
		return nil
	}
	return d.AmountTotal
}

// RecordLines records the line items of an order as they were sold (see
// order.PaidLine), in their order. Recording them again (a retry after the
// catalog named a missing price) refreshes each line's name and amounts.
func RecordLines(ctx context.Context, tx pgx.Tx, sessionID string, lines []order.PaidLine) error {
	for i, l := range lines {
		tag, err := tx.Exec(ctx, `
			INSERT INTO order_lines (order_id, line_item_id, position, price_id, product_name, description,
			                         quantity, unit_amount, amount_total, currency)
			SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, '') FROM orders WHERE checkout_session_id = $1
			ON CONFLICT (order_id, line_item_id) DO UPDATE SET
				position = EXCLUDED.position, price_id = EXCLUDED.price_id, product_name = EXCLUDED.product_name,
				description = EXCLUDED.description, quantity = EXCLUDED.quantity, unit_amount = EXCLUDED.unit_amount,
				amount_total = EXCLUDED.amount_total, currency = EXCLUDED.currency`,
			sessionID, l.LineItemID, i, l.PriceID, l.ProductName, l.Description, l.Quantity, l.UnitAmount, l.AmountTotal, l.Currency)
		if err != nil {
			return fmt.Errorf("recording the line items of order %s: %w", sessionID, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("recording the line items of order %s: the order is not recorded; record it first", sessionID)
		}
	}
	return nil
}

// The line items of orders, read by readLines: linesSQL, the condition on
// the orders' Checkout Session IDs, then linesOrder, each order's lines in
// their order. Lines name their order by its number.
const (
	linesSQL = `
		SELECT o.checkout_session_id, l.line_item_id, l.price_id, l.product_name, l.description, l.quantity,
		       l.unit_amount, l.amount_total, COALESCE(l.currency, '')
		FROM orders o JOIN order_lines l ON l.order_id = o.id
		WHERE `
	linesOrder = ` ORDER BY l.order_id, l.position`
)

// linesOfOrdersSQL reads the lines of the orders of the Checkout Session IDs $1.
var linesOfOrdersSQL = lookup("attachLines", linesSQL+"o.checkout_session_id = ANY($1)"+linesOrder)

// attachLines fills the Lines of the orders, in one query however many
// orders there are.
func attachLines(ctx context.Context, db DB, orders ...*order.Order) error {
	if len(orders) == 0 {
		return nil
	}
	ids := make([]string, len(orders))
	byID := make(map[string]*order.Order, len(orders))
	for i, o := range orders {
		ids[i], byID[o.CheckoutSessionID] = o.CheckoutSessionID, o
	}
	rows, err := db.Query(ctx, linesOfOrdersSQL, ids)
	if err != nil {
		return fmt.Errorf("reading the line items of %d orders: %w", len(orders), err)
	}
	return readLines(rows, byID)
}

// readLines appends the line items of rows (linesSQL) to the Lines of their
// orders, and closes the rows.
func readLines(rows pgx.Rows, byID map[string]*order.Order) error {
	defer rows.Close()
	for rows.Next() {
		var sessionID string
		var l order.PaidLine
		if err := rows.Scan(&sessionID, &l.LineItemID, &l.PriceID, &l.ProductName, &l.Description, &l.Quantity,
			&l.UnitAmount, &l.AmountTotal, &l.Currency); err != nil {
			return fmt.Errorf("reading the line items of %d orders: %w", len(byID), err)
		}
		if o := byID[sessionID]; o != nil {
			o.Lines = append(o.Lines, l)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the line items of %d orders: %w", len(byID), err)
	}
	return nil
}
