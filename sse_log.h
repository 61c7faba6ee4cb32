/* sse_log.h -- numbered log messages.
 *
 * Every message the module logs starts with a stable tag, "SSE" and five
 * digits, the way httpd's own messages carry APLOGNO's "AHnnnnn": an
 * administrator can grep for it, a monitoring rule can match it, and a test
 * looks for the number rather than the prose, which may change. A number is
 * never reused for another message, even after the message is removed.
 *
 * docs/log-messages.txt lists every number with its file, level and text;
 * scripts/lognos.py checks that each ap_log_*error call of the module has a
 * tag, that no tag is used twice, that the list is current (make unit), and
 * prints the next free number (scripts/lognos.py --next).
 */
#ifndef SSE_LOG_H
#define SSE_LOG_H

#define SSE_LOGNO(n) "SSE" #n ": "

#endif
