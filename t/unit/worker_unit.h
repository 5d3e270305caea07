
/*
 * The assertions of chat_worker's unit tests: check() for a condition,
 * check_str() for a string with both sides printed on a failure; main()
 * ends with "N passed, N failed". And parse(), a record through
 * chat_ops_parse (include the worker's sources first).
 */


#ifndef CHAT_WORKER_UNIT_H
#define CHAT_WORKER_UNIT_H


#include <stdio.h>
#include <string.h>


static int  passed, failed;


#define check(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                  \
    } while (0)

#define check_str(got, want)                                               \
    do {                                                                   \
        const char  *g_ = (got), *w_ = (want);                             \
        if (g_ && strcmp(g_, w_) == 0) {                                   \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: got  %s\n%*s want %s\n", __FILE__,         \
                   __LINE__, g_ ? g_ : "(null)",                           \
                   (int) strlen(__FILE__) + 12, "", w_);                   \
        }                                                                  \
    } while (0)


/* a record as Kafka would hand it over (partition 3, offset 42); HEAD is
 * the fields every record carries */
#define HEAD  "\"node\":\"s1:0\",\"sid\":\"00000000000000ab\","           \
              "\"user\":\"alice\",\"dev\":\"phone\",\"ts\":1"

static __attribute__((unused)) chat_parse_rc_t
parse(chat_request_t *req, const char *json)
{
    char  why[160];

    req->partition = 3;
    req->offset = 42;

    return chat_ops_parse(req, json, strlen(json), why, sizeof(why));
}


#endif /* CHAT_WORKER_UNIT_H */
