/* sse_topic.h -- Mercure topic selectors: "*", an exact topic, or an
 * RFC 6570 URI template matched against topics.
 *
 * What "matches" means is what the reference hub (Mercure 0.x, whose
 * topic selectors go through github.com/yosida95/uritemplate v3's
 * Template.Regexp) accepts, so that an application moving from that hub to
 * Apache gets the same updates and the same authorizations; sse_topic.c's
 * opening comment gives the rule per operator, with examples. In short:
 *
 *   "*"                                   every topic
 *   "https://example.com/books/1"         that topic only (bytes compared)
 *   "https://example.com/books/{id}"      .../books/1, .../books/, .../books/a%2Fb;
 *                                         not .../books/1/2 nor .../books/a b
 *   "https://example.com/{+path}"         .../a/b/c?x=1
 *   "https://example.com/books{/id*}"     .../books, .../books/1/2/3
 *   "/search{?q,page}"                    /search, /search?q=x&page=2
 *
 * Every selector also matches the topic that is byte for byte the selector
 * itself (the reference hub compares exactly first), templates included.
 *
 * Matching costs no allocation and at most O(topic length x program size)
 * steps, the program being at most 3 operations per template byte
 * (templates are at most SSE_TOPIC_TEMPLATE_MAX bytes): no backtracking,
 * whatever the selector and the topic. Pure C with APR pools; no httpd,
 * no logging. Tested by tests/unit, fuzzed by fuzz/topic.c.
 */
#ifndef SSE_TOPIC_H
#define SSE_TOPIC_H

#include <apr_pools.h>

/* The longest template compiled (a selector holding a '{'); longer ones
 * are refused, with a reason. Exact selectors have no limit here. */
#define SSE_TOPIC_TEMPLATE_MAX 4096

/* A compiled topic selector. */
typedef struct sse_topic_selector sse_topic_selector;

/* Compiles selector (len bytes, any bytes, not NUL-terminated) into a
 * selector allocated from p. "*" matches every topic; a selector without a
 * template expression matches only the identical topic; otherwise it is an
 * RFC 6570 template. NULL with *why (a short English reason) when the
 * template is malformed (unclosed brace, bad operator or modifier, ...). */
sse_topic_selector *sse_topic_compile(apr_pool_t *p, const char *selector,
                                      apr_size_t len, const char **why);

/* A selector matching only the identical topic, whatever its bytes (even
 * "*" or a template): what the reference hub makes of a selector that is
 * not a valid template (it falls back to comparing exactly). For selectors
 * a 4xx cannot answer, such as those of a token's mercure.subscribe claim,
 * when sse_topic_compile refused them. */
sse_topic_selector *sse_topic_exact(apr_pool_t *p, const char *selector, apr_size_t len);

/* What matching sel costs per topic byte, in program positions the
 * matcher may visit: 1 for "*", an exact selector or a template of at most
 * 64 positions (one machine word), else its program's size (up to 3 per
 * template byte). A hub sums it over a subscription's selectors to refuse
 * those that would make every delivery expensive (SSE_MERCURE_COST_MAX). */
apr_size_t sse_topic_cost(const sse_topic_selector *sel);

/* 1 when topic (len bytes) matches, 0 when not. Thread-safe, no
 * allocation, bounded time: see above. */
int sse_topic_match(const sse_topic_selector *sel, const char *topic, apr_size_t len);

#endif
