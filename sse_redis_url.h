/* sse_redis_url.h -- the address of SSERedis, as an administrator writes it.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   unix:/path/to/redis.sock[?db=N]
 *
 * host is a name (letters, digits, '-', '.', '_') or an IPv6 address in
 * brackets; port 1..65535 (default 6379); db 0..SSE_REDIS_DB_MAX (default
 * 0). Credentials need the ':' (Redis's AUTH takes a password, or a user
 * and a password: "user@" alone names no password and is refused); the
 * user and the password may be percent-encoded (%40 for '@', %2F for '/').
 * The socket path is absolute and fits a sockaddr_un. Nothing else may
 * follow: an unknown query or a trailing path is an error, not ignored.
 *
 * Pure C: no httpd, no APR, no allocation. Tested by tests/unit.
 */
#ifndef SSE_REDIS_URL_H
#define SSE_REDIS_URL_H

#define SSE_REDIS_HOST_MAX   255
#define SSE_REDIS_PATH_MAX   107        /* sun_path less its NUL */
#define SSE_REDIS_CRED_MAX   255
#define SSE_REDIS_DB_MAX     1000000    /* Redis's "databases" is a config; a sane cap */
#define SSE_REDIS_PORT_DEFAULT 6379

typedef struct sse_redis_url_s {
    int  is_unix;
    char host[SSE_REDIS_HOST_MAX + 1];  /* without brackets */
    int  port;
    char path[SSE_REDIS_PATH_MAX + 1];  /* is_unix */
    char user[SSE_REDIS_CRED_MAX + 1];  /* "" : none (AUTH password) */
    char password[SSE_REDIS_CRED_MAX + 1];
    int  has_password;
    int  db;
} sse_redis_url;

/* Parses s (NUL-terminated). NULL when valid (*out filled), otherwise a
 * static message saying what is wrong; the caller names the directive. */
const char *sse_redis_url_parse(const char *s, sse_redis_url *out);

#endif
