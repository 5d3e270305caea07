
/*
 * The assertions of chat_worker's unit tests: check() for a condition,
 * check_str() for a string with both sides printed on a failure; main()
 * ends with "N passed, N failed".
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


#endif /* CHAT_WORKER_UNIT_H */
