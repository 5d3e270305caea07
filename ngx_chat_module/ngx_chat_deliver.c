
/*
 * What arrives from Redis for this process: payloads on its node channel
 * (ngx_chat_wire.h: frames for local sessions, kicks of replaced ones) and
 * presence events, handed to the sessions they name and to the watchers of
 * the user they are about. The one place the subscription's messages go.
 */


#include "ngx_chat.h"


static void ngx_chat_deliver_payload(const char *p, const char *last);


static ngx_str_t  ngx_chat_deliver_presence =
    ngx_string(NGX_CHAT_WIRE_CHANNEL_PRESENCE);


void
ngx_chat_deliver(const u_char *channel, size_t channel_len,
    const u_char *data, size_t len)
{
    if (channel_len == ngx_chat_deliver_presence.len
        && ngx_strncmp(channel, ngx_chat_deliver_presence.data, channel_len)
           == 0)
    {
        ngx_chat_presence_event(data, len);
        return;
    }

    /* the node channel is the only other one subscribed */
    ngx_chat_deliver_payload((const char *) data, (const char *) data + len);
}


static void
ngx_chat_deliver_payload(const char *p, const char *last)
{
    int                      rc;
    const char              *sids, *sids_end, *sid;
    ngx_chat_session_t      *s;
    ngx_chat_wire_record_t   rec;

    while ((rc = ngx_chat_wire_record_next(&p, last, &rec)) == 1) {

        if (rec.type != NGX_CHAT_WIRE_RECORD_FRAME
            && rec.type != NGX_CHAT_WIRE_RECORD_KICK)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "chat: a delivery record of unknown type \"%c\" "
                          "from redis", rec.type);
            continue;
        }

        sids = rec.args;
        sids_end = rec.args + rec.args_len;

        while ((rc = ngx_chat_wire_sids_next(&sids, sids_end, &sid)) == 1) {

            s = ngx_chat_session_find((const u_char *) sid);
            if (s == NULL) {
                continue;       /* gone meanwhile */
            }

            if (rec.type == NGX_CHAT_WIRE_RECORD_FRAME) {
                (void) ngx_chat_session_send_text(s, (u_char *) rec.body,
                                                  rec.body_len);

            } else {
                ngx_chat_registry_forget(s);
                ngx_chat_session_close(s, NGX_CHAT_WIRE_CLOSE_REPLACED,
                                       "replaced by a newer connection");
            }
        }

        if (rc == -1) {
            break;
        }
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: invalid delivery payload from redis");
    }
}
