
/*
 * Revocations, as nginx sees them. The workers keep chat:revoked (from the
 * store of record) and publish each new revocation on chat:control, which
 * every process subscribes to: the live sessions it names are closed with
 * 4003 here. A token is checked against chat:revoked by one HMGET of the
 * user's field and the device's, asked on the command link: the handshake
 * and the auth renewal wait for its answer, nginx does not.
 *
 * While Redis is away the check cannot be made: the token is taken as it
 * is (the connection would be useless for deliveries anyway, and refusing
 * every client would turn a Redis outage into a reconnect storm); a
 * revocation made meanwhile still closes the sessions when its message
 * arrives, and refuses the token at the next handshake.
 */


#include "ngx_chat.h"

#include <hiredis/hiredis.h>


typedef struct {
    ngx_chat_revoke_pt   handler;
    void                *data;
    int64_t              iat;
} ngx_chat_revoke_check_t;


static void ngx_chat_revoke_checked(void *reply, void *data);


ngx_int_t
ngx_chat_revoke_check(ngx_str_t *user, ngx_str_t *device, int64_t iat,
    ngx_chat_revoke_pt handler, void *data)
{
    char                     user_field[NGX_CHAT_WIRE_REVOKED_FIELD_MAX];
    char                     dev_field[NGX_CHAT_WIRE_REVOKED_FIELD_MAX];
    const char              *argv[4];
    size_t                   argvlen[4];
    ngx_chat_revoke_check_t *c;

    c = ngx_alloc(sizeof(ngx_chat_revoke_check_t), ngx_cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->handler = handler;
    c->data = data;
    c->iat = iat;

    argv[0] = "HMGET";
    argvlen[0] = sizeof("HMGET") - 1;
    argv[1] = NGX_CHAT_WIRE_KEY_REVOKED;
    argvlen[1] = sizeof(NGX_CHAT_WIRE_KEY_REVOKED) - 1;
    argv[2] = user_field;
    argvlen[2] = ngx_chat_wire_revoked_field(user_field,
                                             (char *) user->data, user->len,
                                             NULL, 0);
    argv[3] = dev_field;
    argvlen[3] = ngx_chat_wire_revoked_field(dev_field,
                                             (char *) user->data, user->len,
                                             (char *) device->data,
                                             device->len);

    if (ngx_chat_redis_command(ngx_chat_revoke_checked, c, 4, argv, argvlen)
        != NGX_OK)
    {
        ngx_free(c);
        return NGX_DECLINED;
    }

    return NGX_AGAIN;
}


static void
ngx_chat_revoke_checked(void *reply, void *data)
{
    ngx_chat_revoke_check_t  *c = data;

    size_t                    i;
    int64_t                   ms;
    ngx_int_t                 rc;
    redisReply               *r = reply, *v;
    ngx_chat_revoke_pt        handler;

    rc = NGX_OK;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        rc = NGX_DECLINED;

    } else {
        for (i = 0; i < r->elements; i++) {
            v = r->element[i];

            if (v->type != REDIS_REPLY_STRING) {
                continue;
            }

            ms = ngx_atoof((u_char *) v->str, v->len);

            if (ms > 0 && ngx_chat_wire_revokes(ms, c->iat)) {
                rc = NGX_ABORT;
                break;
            }
        }
    }

    handler = c->handler;
    data = c->data;
    ngx_free(c);

    handler(data, rc);
}


/* a chat:control message: the sessions it names, whose tokens it revokes */

void
ngx_chat_revoke_control(const u_char *p, size_t len)
{
    ngx_uint_t                n;
    ngx_chat_session_t       *s, *next;
    ngx_chat_wire_control_t   ev;

    if (!ngx_chat_wire_control_parse((const char *) p, len, &ev)) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: a malformed control message of %uz bytes",
                      len);
        return;
    }

    n = 0;

    for (s = ngx_chat_session_first(); s; s = next) {
        next = ngx_chat_session_next(s);

        if (s->closing
            || s->user_len != ev.user_len
            || ngx_strncmp(ngx_chat_session_user(s)->data, ev.user,
                           ev.user_len) != 0)
        {
            continue;
        }

        if (ev.dev
            && (s->device_len != ev.dev_len
                || ngx_strncmp(ngx_chat_session_device(s)->data, ev.dev,
                               ev.dev_len) != 0))
        {
            continue;
        }

        /* a token issued after the revocation stays (a message published
         * again after the user signed in anew) */
        if (!ngx_chat_wire_revokes(ev.ms, s->issued)) {
            continue;
        }

        ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_REVOKED, "revoked");
        n++;
    }

    if (n) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "chat: %ui session(s) of \"%*s\" closed: revoked",
                      n, ev.user_len, ev.user);
    }
}
