
/*
 * test_chain.c: a node following one partition's chain of sections
 * (ngx_chat_chain.c), and the P, R and A records' arguments
 * (ngx_chat_wire.c).
 */

#include <string.h>

#include "ngx_chat_chain.h"
#include "ngx_chat_wire.h"
#include "unit.h"


static void
test_in_order(void)
{
    ngx_chat_chain_t  c;

    ngx_chat_chain_init(&c);

    CHECK(ngx_chat_chain_section(&c, -1, 4) == NGX_CHAT_CHAIN_DELIVER,
          "the first section");
    CHECK(c.last == 4, "last %lld", (long long) c.last);
    CHECK(ngx_chat_chain_section(&c, 4, 9) == NGX_CHAT_CHAIN_DELIVER,
          "the next");
    CHECK(ngx_chat_chain_section(&c, 4, 9) == NGX_CHAT_CHAIN_DROP,
          "the same again (a publisher that sent twice)");
    CHECK(ngx_chat_chain_section(&c, -1, 2) == NGX_CHAT_CHAIN_DROP,
          "an old one");
    CHECK(c.last == 9 && c.repair == -1, "unchanged");
}


static void
test_gap_and_repair(void)
{
    ngx_chat_chain_t  c;

    ngx_chat_chain_init(&c);
    (void) ngx_chat_chain_section(&c, -1, 4);

    /* 5..12 lost: the section after them shows it */
    CHECK(ngx_chat_chain_section(&c, 12, 20) == NGX_CHAT_CHAIN_GAP, "gap");
    CHECK(c.repair == 12 && c.last == 4, "repair (4, 12]");
    CHECK(ngx_chat_chain_section(&c, 20, 25) == NGX_CHAT_CHAIN_HOLD,
          "held while the repair is due");
    CHECK(ngx_chat_chain_retry(&c) == NGX_CHAT_CHAIN_GAP, "ask again");

    CHECK(ngx_chat_chain_repaired(&c, 0, 12) == NGX_CHAT_CHAIN_DROP,
          "a repair from elsewhere");
    CHECK(ngx_chat_chain_repaired(&c, 4, 11) == NGX_CHAT_CHAIN_DROP,
          "a repair short of the gap");
    CHECK(ngx_chat_chain_repaired(&c, 4, 12) == NGX_CHAT_CHAIN_DELIVER,
          "the repair");
    CHECK(c.last == 12 && c.repair == -1, "last %lld", (long long) c.last);
    CHECK(ngx_chat_chain_repaired(&c, 4, 12) == NGX_CHAT_CHAIN_DROP,
          "answered twice");
    CHECK(ngx_chat_chain_retry(&c) == NGX_CHAT_CHAIN_DROP, "nothing due");

    /* the held ones, released in order */
    CHECK(ngx_chat_chain_section(&c, 12, 20) == NGX_CHAT_CHAIN_DELIVER,
          "first held");
    CHECK(ngx_chat_chain_section(&c, 20, 25) == NGX_CHAT_CHAIN_DELIVER,
          "second held");
    CHECK(c.last == 25, "last %lld", (long long) c.last);
}


static void
test_first_section_lost(void)
{
    ngx_chat_chain_t  c;

    ngx_chat_chain_init(&c);

    CHECK(ngx_chat_chain_section(&c, 7, 9) == NGX_CHAT_CHAIN_GAP,
          "the node never got the section ending at 7");
    CHECK(c.last == -1 && c.repair == 7, "repair (-1, 7]");
}


static void
test_audit(void)
{
    ngx_chat_chain_t  c;

    ngx_chat_chain_init(&c);
    (void) ngx_chat_chain_section(&c, -1, 4);

    CHECK(ngx_chat_chain_audit(&c, 4) == NGX_CHAT_CHAIN_DELIVER, "in step");
    CHECK(ngx_chat_chain_audit(&c, 9) == NGX_CHAT_CHAIN_DELIVER,
          "one audit ahead: maybe on its way");
    CHECK(ngx_chat_chain_section(&c, 4, 9) == NGX_CHAT_CHAIN_DELIVER,
          "it was");
    CHECK(ngx_chat_chain_audit(&c, 9) == NGX_CHAT_CHAIN_DELIVER, "in step");

    /* the newest lost, nothing after it to show the gap */
    CHECK(ngx_chat_chain_audit(&c, 15) == NGX_CHAT_CHAIN_DELIVER, "once");
    CHECK(ngx_chat_chain_audit(&c, 17) == NGX_CHAT_CHAIN_GAP, "twice: gap");
    CHECK(c.repair == 15 && c.last == 9, "repair (9, 15]");
    CHECK(ngx_chat_chain_audit(&c, 17) == NGX_CHAT_CHAIN_DELIVER,
          "a repair is due: no second one");
    CHECK(ngx_chat_chain_section(&c, 15, 17) == NGX_CHAT_CHAIN_HOLD,
          "the section after it waits");

    ngx_chat_chain_give_up(&c, c.repair);
    CHECK(c.last == 15 && c.repair == -1, "given up");
    CHECK(ngx_chat_chain_section(&c, 15, 17) == NGX_CHAT_CHAIN_DELIVER,
          "released");
}


static void
test_ranges(void)
{
    char                   buf[NGX_CHAT_WIRE_RANGE_HEADER_MAX], *p;
    ngx_chat_wire_range_t  r, back;
    ngx_chat_wire_record_t rec;
    const char            *pos;

    r.partition = 3;
    r.from = -1;
    r.to = 1234567890123LL;
    p = ngx_chat_wire_range_header(buf, NGX_CHAT_WIRE_RECORD_SECTION, &r, 0);
    CHECK((size_t) (p - buf) <= sizeof(buf), "header size");

    pos = buf;
    CHECK(ngx_chat_wire_record_next(&pos, p, &rec) == 1
          && rec.type == 'P' && rec.body_len == 0, "a record");
    CHECK(ngx_chat_wire_range_parse(rec.args, rec.args_len, &back)
          && back.partition == 3 && back.from == -1
          && back.to == 1234567890123LL, "read back");

#define RANGE(s)  ngx_chat_wire_range_parse(s, sizeof(s) - 1, &back)

    CHECK(RANGE("0 5 9"), "plain");
    CHECK(RANGE("0 -1 0"), "from none");
    CHECK(!RANGE("0 9 5"), "backwards");
    CHECK(!RANGE("-1 0 5"), "negative partition");
    CHECK(!RANGE("0 -2 5"), "from below -1");
    CHECK(!RANGE("0 5"), "two numbers");
    CHECK(!RANGE("0 5 9 1"), "four numbers");
    CHECK(!RANGE("0  5 9"), "two spaces");
    CHECK(!RANGE("0 5 9x"), "trailing garbage");
    CHECK(!RANGE("0 5 9999999999999999999"), "too many digits");
    CHECK(!RANGE("2147483648 0 1"), "partition beyond 32 bits");

#undef RANGE
}


static void
test_acks(void)
{
    char                    buf[NGX_CHAT_WIRE_ACK_HEADER_MAX], *p;
    const char             *pos, *sid;
    int64_t                 ms;
    ngx_chat_wire_record_t  rec;

    p = ngx_chat_wire_ack_header(buf, 1714128000123LL, "00000000000000ab",
                                 2);
    CHECK((size_t) (p - buf) <= sizeof(buf), "header size");
    memcpy(p, "{}", 2);
    p += 2;

    pos = buf;
    CHECK(ngx_chat_wire_record_next(&pos, p, &rec) == 1 && rec.type == 'A'
          && rec.body_len == 2, "a record");
    CHECK(ngx_chat_wire_ack_parse(rec.args, rec.args_len, &ms, &sid)
          && ms == 1714128000123LL
          && memcmp(sid, "00000000000000ab", 16) == 0, "read back");

#define ACK(s)  ngx_chat_wire_ack_parse(s, sizeof(s) - 1, &ms, &sid)

    CHECK(!ACK("12 00000000000000ab,00000000000000ac"), "two sessions");
    CHECK(!ACK("12"), "no session");
    CHECK(!ACK("-5 00000000000000ab"), "a negative time");
    CHECK(!ACK("x 00000000000000ab"), "not a time");
    CHECK(!ACK("12 0000000000000ab"), "short sid");

#undef ACK
}


int
main(void)
{
    test_in_order();
    test_gap_and_repair();
    test_first_section_lost();
    test_audit();
    test_ranges();
    test_acks();

    printf("%u passed, %u failed\n", passed, failed);

    return failed ? 1 : 0;
}
