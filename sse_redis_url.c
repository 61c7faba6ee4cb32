/* sse_redis_url.c -- SSERedis's address (see sse_redis_url.h).
 *
 * Strict on purpose: a typo in the address of the server that every
 * publish goes through should stop httpd at start-up with a message, not
 * make it connect somewhere else. So every part is checked for its exact
 * form, and anything left over is an error.
 */
#include "sse_redis_url.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, e) into out (at most max bytes, NUL-terminated). */
static const char *decode(const char *s, const char *e, char *out, size_t max)
{
    size_t n = 0;

    while (s < e) {
        char c = *s++;
        if (c == '%') {
            int hi = s < e ? hexval(s[0]) : -1, lo = s + 1 < e ? hexval(s[1]) : -1;
            if (hi < 0 || lo < 0)
                return "a '%' in the credentials is not followed by two hex digits";
            c = (char)(hi * 16 + lo);
            s += 2;
            if (c == '\0')
                return "the credentials contain %00";
        }
        if (n == max)
            return "user or password longer than 255 bytes";
        out[n++] = c;
    }
    out[n] = '\0';
    return NULL;
}

/* Digits only, value in [min, max]. */
static int number(const char *s, const char *e, long min, long max, int *out)
{
    long v = 0;

    if (s == e)
        return 0;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (*s - '0');
        if (v > max)
            return 0;
    }
    if (v < min)
        return 0;
    *out = (int)v;
    return 1;
}

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '-' || c == '.' || c == '_';
}

static const char *parse_tcp(const char *s, sse_redis_url *out)
{
    const char *end = s + strlen(s), *slash, *at = NULL, *p, *host, *host_end, *err;

    /* The credentials end at the last '@' before the path: a password may
     * hold '@' only percent-encoded, but the host never does. */
    slash = memchr(s, '/', (size_t)(end - s));
    for (p = s; p < (slash ? slash : end); p++) {
        if (*p == '@')
            at = p;
    }
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (!colon)
            return "credentials must be [user]:password@ (a user alone has no password)";
        if ((err = decode(s, colon, out->user, SSE_REDIS_CRED_MAX))
            || (err = decode(colon + 1, at, out->password, SSE_REDIS_CRED_MAX)))
            return err;
        if (!out->password[0])
            return "the password after ':' is empty";
        out->has_password = 1;
        s = at + 1;
    }
    host_end = slash ? slash : end;
    if (*s == '[') {
        host = s + 1;
        p = memchr(host, ']', (size_t)(host_end - host));
        if (!p || p == host)
            return "an IPv6 host must be in brackets: [::1]";
        for (s = host; s < p; s++) {
            if (!(hexval(*s) >= 0 || *s == ':' || *s == '.'))
                return "the IPv6 address in brackets has a character that is not hex, ':' or '.'";
        }
        if ((size_t)(p - host) > SSE_REDIS_HOST_MAX)
            return "host longer than 255 bytes";
        memcpy(out->host, host, (size_t)(p - host));
        out->host[p - host] = '\0';
        s = p + 1;
        if (s < host_end && *s != ':')
            return "only ':port' may follow the bracketed host";
    }
    else {
        host = s;
        while (s < host_end && *s != ':')
            s++;
        if (s == host)
            return "no host (redis://host[:port][/db])";
        if ((size_t)(s - host) > SSE_REDIS_HOST_MAX)
            return "host longer than 255 bytes";
        for (p = host; p < s; p++) {
            if (!host_char(*p))
                return "the host has a character that is not a letter, digit, '-', '.' or '_'";
        }
        memcpy(out->host, host, (size_t)(s - host));
        out->host[s - host] = '\0';
    }
    if (s < host_end) {                 /* *s == ':' */
        if (!number(s + 1, host_end, 1, 65535, &out->port))
            return "the port is not a number from 1 to 65535";
    }
    if (slash && slash + 1 < end) {
        if (!number(slash + 1, end, 0, SSE_REDIS_DB_MAX, &out->db))
            return "the database after '/' is not a number from 0 to 1000000";
    }
    return NULL;
}

static const char *parse_unix(const char *s, sse_redis_url *out)
{
    const char *q = strchr(s, '?');
    size_t len = q ? (size_t)(q - s) : strlen(s);

    if (*s != '/')
        return "the socket path must be absolute: unix:/path/to/redis.sock";
    if (len > SSE_REDIS_PATH_MAX)
        return "the socket path is longer than 107 bytes";
    memcpy(out->path, s, len);
    out->path[len] = '\0';
    if (q) {
        if (strncmp(q + 1, "db=", 3) != 0)
            return "the only query a socket path takes is ?db=N";
        if (!number(q + 4, q + strlen(q), 0, SSE_REDIS_DB_MAX, &out->db))
            return "db= is not a number from 0 to 1000000";
    }
    return NULL;
}

const char *sse_redis_url_parse(const char *s, sse_redis_url *out)
{
    const char *p;

    memset(out, 0, sizeof(*out));
    out->port = SSE_REDIS_PORT_DEFAULT;
    for (p = s; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return "contains a space or a control character";
    }
    if (strncmp(s, "redis://", 8) == 0)
        return parse_tcp(s + 8, out);
    if (strncmp(s, "unix:", 5) == 0) {
        out->is_unix = 1;
        return parse_unix(s + 5, out);
    }
    return "not redis://[[user]:password@]host[:port][/db] nor unix:/path[?db=N]";
}
