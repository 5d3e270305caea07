/*
 * chatctl.c: the administration tool of ngx_chat. For now one command:
 *
 *   chatctl token <user> [--device D] [--ttl SECONDS] [--nbf SECONDS]
 *                 [--secret S | --secret-file F]
 *
 * prints a client token: a JWT signed HS256 (RFC 7519, RFC 7515) with the
 * secret nginx.conf gives to chat_jwt_secret, taken from --secret, else the
 * first line of --secret-file, else $CHAT_JWT_SECRET. Header
 * {"alg":"HS256","typ":"JWT"}, claims sub, dev, iat, exp and, with --nbf,
 * nbf. --ttl and --nbf are seconds from now and may be negative, which makes
 * expired and not-yet-valid tokens for tests.
 *
 * Self-contained (jansson and OpenSSL's HMAC only), so that it builds apart
 * from the worker.
 */

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>


#define CHATCTL_DEFAULT_TTL   86400
#define CHATCTL_ID_MAX        64
#define CHATCTL_SECRET_MAX    4096


static void
chatctl_usage(FILE *f)
{
    fprintf(f,
        "usage: chatctl token <user> [--device D] [--ttl SECONDS]"
        " [--nbf SECONDS]\n"
        "                     [--secret S | --secret-file F]\n"
        "  prints an HS256 JWT for <user> (claims sub, dev, iat, exp[, nbf]);\n"
        "  the secret comes from --secret, --secret-file or"
        " $CHAT_JWT_SECRET;\n"
        "  --device defaults to \"default\", --ttl to %d s; --ttl and --nbf"
        " are\n"
        "  seconds from now and may be negative\n", CHATCTL_DEFAULT_TTL);
}


/* the protocol's alphabet for user and device ids */
static bool
chatctl_valid_id(const char *s)
{
    size_t  n;

    for (n = 0; s[n]; n++) {
        unsigned char  c = s[n];

        if (n == CHATCTL_ID_MAX) {
            return false;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == '@' || c == '-'))
        {
            return false;
        }
    }

    return n > 0;
}


/*
 * base64url (RFC 4648 section 5) without padding, as JWS wants it.
 * out must hold 4 * ceil(len / 3) + 1 bytes; returns the length written.
 */
static size_t
chatctl_base64url(const unsigned char *in, size_t len, char *out)
{
    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    size_t    i, n = 0;
    uint32_t  v;

    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18 & 0x3f];
        out[n++] = alphabet[v >> 12 & 0x3f];
        out[n++] = alphabet[v >> 6 & 0x3f];
        out[n++] = alphabet[v & 0x3f];
    }

    if (len - i == 1) {
        v = (uint32_t) in[i] << 16;
        out[n++] = alphabet[v >> 18 & 0x3f];
        out[n++] = alphabet[v >> 12 & 0x3f];

    } else if (len - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        out[n++] = alphabet[v >> 18 & 0x3f];
        out[n++] = alphabet[v >> 12 & 0x3f];
        out[n++] = alphabet[v >> 6 & 0x3f];
    }

    out[n] = '\0';

    return n;
}


/* appends base64url(json) of obj to the token being built */
static bool
chatctl_append_part(char *token, size_t *len, json_t *obj)
{
    char    *text;
    size_t   n;

    text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL) {
        return false;
    }

    n = strlen(text);
    *len += chatctl_base64url((unsigned char *) text, n, token + *len);
    free(text);

    return true;
}


/* the secret's first line: the stack writes it with a newline */
static bool
chatctl_read_secret(const char *path, char *secret, size_t size)
{
    FILE    *f;
    size_t   n;

    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "chatctl: %s: %s\n", path, strerror(errno));
        return false;
    }

    n = fread(secret, 1, size - 1, f);
    fclose(f);
    secret[n] = '\0';
    secret[strcspn(secret, "\r\n")] = '\0';

    return true;
}


static bool
chatctl_seconds(const char *name, const char *arg, long long *out)
{
    char  *end;

    errno = 0;
    *out = strtoll(arg, &end, 10);

    if (errno || end == arg || *end) {
        fprintf(stderr, "chatctl: %s: not a number of seconds: %s\n", name,
                arg);
        return false;
    }

    return true;
}


static int
chatctl_token(int argc, char **argv)
{
    static const struct option  longopts[] = {
        { "device",      required_argument, NULL, 'd' },
        { "ttl",         required_argument, NULL, 't' },
        { "nbf",         required_argument, NULL, 'n' },
        { "secret",      required_argument, NULL, 's' },
        { "secret-file", required_argument, NULL, 'f' },
        { "help",        no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    const char     *user, *device = "default", *secret_arg = NULL;
    const char     *secret_file = NULL;
    static char     secret[CHATCTL_SECRET_MAX];
    long long       ttl = CHATCTL_DEFAULT_TTL, nbf = 0, now;
    bool            has_nbf = false;
    json_t         *header, *claims;
    char           *token;
    unsigned char   mac[EVP_MAX_MD_SIZE];
    unsigned int    mac_len = 0;
    size_t          len = 0;
    int             c;

    /* "+" would stop at the user; GNU getopt permutes, so options may come
     * before or after it */
    optind = 1;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {

        case 'd':
            device = optarg;
            break;

        case 't':
            if (!chatctl_seconds("--ttl", optarg, &ttl)) {
                return 2;
            }
            break;

        case 'n':
            if (!chatctl_seconds("--nbf", optarg, &nbf)) {
                return 2;
            }
            has_nbf = true;
            break;

        case 's':
            secret_arg = optarg;
            break;

        case 'f':
            secret_file = optarg;
            break;

        case 'h':
            chatctl_usage(stdout);
            return 0;

        default:
            chatctl_usage(stderr);
            return 2;
        }
    }

    if (optind + 1 != argc) {
        chatctl_usage(stderr);
        return 2;
    }

    user = argv[optind];

    if (!chatctl_valid_id(user)) {
        fprintf(stderr, "chatctl: user id: 1-%d characters of"
                " [A-Za-z0-9_.@-]\n", CHATCTL_ID_MAX);
        return 2;
    }

    if (!chatctl_valid_id(device)) {
        fprintf(stderr, "chatctl: device id: 1-%d characters of"
                " [A-Za-z0-9_.@-]\n", CHATCTL_ID_MAX);
        return 2;
    }

    if (secret_arg) {
        snprintf(secret, sizeof(secret), "%s", secret_arg);

    } else if (secret_file) {
        if (!chatctl_read_secret(secret_file, secret, sizeof(secret))) {
            return 1;
        }

    } else if (getenv("CHAT_JWT_SECRET")) {
        snprintf(secret, sizeof(secret), "%s", getenv("CHAT_JWT_SECRET"));
    }

    if (secret[0] == '\0') {
        fprintf(stderr, "chatctl: no secret: give --secret, --secret-file or"
                " set CHAT_JWT_SECRET\n");
        return 2;
    }

    now = (long long) time(NULL);

    header = json_object();
    json_object_set_new(header, "alg", json_string("HS256"));
    json_object_set_new(header, "typ", json_string("JWT"));

    claims = json_object();
    json_object_set_new(claims, "sub", json_string(user));
    json_object_set_new(claims, "dev", json_string(device));
    json_object_set_new(claims, "iat", json_integer(now));
    json_object_set_new(claims, "exp", json_integer(now + ttl));
    if (has_nbf) {
        json_object_set_new(claims, "nbf", json_integer(now + nbf));
    }

    /* ids are short: 1 KB holds both parts and the signature */
    token = malloc(1024);
    if (token == NULL) {
        fprintf(stderr, "chatctl: out of memory\n");
        return 1;
    }

    if (!chatctl_append_part(token, &len, header)) {
        goto failed;
    }

    token[len++] = '.';

    if (!chatctl_append_part(token, &len, claims)) {
        goto failed;
    }

    /* the signature covers "<header>.<claims>" as encoded */
    if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
             (unsigned char *) token, len, mac, &mac_len) == NULL)
    {
        fprintf(stderr, "chatctl: HMAC-SHA256 failed\n");
        goto failed;
    }

    token[len++] = '.';
    len += chatctl_base64url(mac, mac_len, token + len);

    printf("%s\n", token);

    json_decref(header);
    json_decref(claims);
    free(token);

    return 0;

failed:

    json_decref(header);
    json_decref(claims);
    free(token);

    return 1;
}


int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return chatctl_token(argc - 1, argv + 1);
    }

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0
                      || strcmp(argv[1], "help") == 0))
    {
        chatctl_usage(stdout);
        return 0;
    }

    chatctl_usage(stderr);

    return 2;
}
