package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// promqlFunctions are PromQL's functions and aggregation operators: an
// identifier followed by "(" must be one of them.
var promqlFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp
		clamp_max clamp_min count count_over_time count_values day_of_month day_of_week day_of_year
		days_in_month delta deriv exp floor group histogram_avg histogram_count histogram_fraction
		histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta
		increase irate label_join label_replace last_over_time limitk limit_ratio ln log10 log2 mad_over_time
		max max_over_time min min_over_time minute month predict_linear present_over_time quantile
		quantile_over_time rate resets round scalar sgn sort sort_by_label sort_by_label_desc sort_desc
		sqrt stddev stddev_over_time stdvar stdvar_over_time sum sum_over_time time timestamp topk
		vector year acos acosh asin asinh atan atanh cos cosh deg pi rad sin sinh tan tanh`) {
		promqlFunctions[f] = true
	}
}

// promqlLabelLists are the keywords followed by a list of label names;
// promqlKeywords the other words that are no metric.
var (
	promqlLabelLists = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	promqlKeywords   = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
)

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function, a keyword, a label name (in a
// matcher or a by/on list) or inside a string, a range or a number. It is
// no parser; it fails on what it cannot place (an unknown function, an
// unclosed bracket) rather than let a name slip by.
func metricNames(expr string) ([]string, error) {
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipBracket(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number or a duration (5m, 1e3, 0x1f): no name starts
			// with a digit.
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := i
			for next < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[next])) {
				next++
			}
			followedByParen := next < len(expr) && expr[next] == '('
			// An aggregation may put its label list first: sum by (le) (...).
			for _, grouping := range []string{"by", "without"} {
				rest := strings.ToLower(expr[next:])
				if strings.HasPrefix(rest, grouping) && (len(rest) == len(grouping) || !isIdentChar(rest[len(grouping)])) {
					followedByParen = true
				}
			}
			lower := strings.ToLower(word)
			switch {
			case slices.Contains(promqlLabelLists, lower):
				if followedByParen {
					end, err := skipBracket(expr, next)
					if err != nil {
						return nil, err
					}
					i = end
				}
			case slices.Contains(promqlKeywords, lower):
			case followedByParen:
				if !promqlFunctions[word] {
					return nil, fmt.Errorf("%q is not a PromQL function (in %q)", word, expr)
				}
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipString returns the index after the string literal opening at i.
func skipString(expr string, i int) (int, error) {
	quote := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && quote != '`':
			j++
		case expr[j] == quote:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string in %q", expr)
}

// skipBracket returns the index after the bracket opening at i and its
// contents (label matchers, a range, a label list), strings included.
func skipBracket(expr string, i int) (int, error) {
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}[expr[i]]
	for j := i + 1; j < len(expr); j++ {
		switch expr[j] {
		case '"', '\'', '`':
			end, err := skipString(expr, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case closing:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed %q in %q", expr[i], expr)
}

func TestMetricNamesFindsEverySelectedMetricAndNothingElse(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (event_type) (rate(fulfiller_webhooks_received_total{outcome=~"recorded|duplicate"}[5m]))`:       {"fulfiller_webhooks_received_total"},
		`histogram_quantile(0.99, sum by (le) (rate(fulfiller_key_delivery_seconds_bucket[10m]))) > 300`:         {"fulfiller_key_delivery_seconds_bucket"},
		`max by (price) (fulfiller_stock_keys{status="ready"}) < 0.25 * max by (price) (fulfiller_stock_target)`: {"fulfiller_stock_keys", "fulfiller_stock_target"},
		`time() - max(a_metric) > 86400 and on() sum(b_metric offset 1h) > 0 or c_metric`:                        {"a_metric", "b_metric", "c_metric"},
		`label_replace(sum(x_total{status=~"401|403"}) > 0, "service", "luarmor", "", "")`:                       {"x_total"},
		`sum without (instance) (up) * on (job) group_left (version) build_info`:                                 {"up", "build_info"},
		`rate(recorded:per_second[1m:10s]) # a comment naming not_a_metric`:                                      {"recorded:per_second"},
		`1e3 * 0x1f + inf - 5`: nil,
		`{__name__="by_name"}`: nil, // selected by a label: no name to check
	} {
		got, err := metricNames(expr)
		require.NoError(t, err, expr)
		require.Equal(t, want, got, expr)
	}
	for _, bad := range []string{`rat(x[5m])`, `sum(x{a="b"`, `x{a="b}`} {
		_, err := metricNames(bad)
		require.Error(t, err, bad)
	}
}
