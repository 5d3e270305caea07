
/*
 * The one assertion macro of the module's unit tests: counts, prints each
 * failure with its place, and main() ends with "N passed, N failed".
 */


#ifndef _NGX_CHAT_UNIT_H_INCLUDED_
#define _NGX_CHAT_UNIT_H_INCLUDED_


#include <stdio.h>


static unsigned  passed, failed;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (cond) {                                                           \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
        }                                                                     \
    } while (0)


#endif /* _NGX_CHAT_UNIT_H_INCLUDED_ */
