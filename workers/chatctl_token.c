/*
 * chatctl_token.c: chatctl token, a client token: a JWT (RFC 7519, RFC
 * 7515) signed HS256 with the secret nginx.conf gives to chat_jwt_secret.
 *
 * The forging options (--claims, --drop, --header, --alg, --sign,
 * --bad-signature) make the tokens a hostile client might send: the
 * integration tests mint every token they use here, so that one signing
 * implementation serves nginx's tests, chatctl and the load generator.
 * What they give is not checked.
 *
 * The signing is the module's ngx_chat_jwt.c and the id alphabet its
 * ngx_chat_wire.c (pure C, linked in), so that chatctl agrees with
 * nginx's check.
 */

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "chatctl.h"
#include "ngx_chat_jwt.h"


#define CHATCTL_DEFAULT_TTL   86400
#define CHATCTL_SECRET_MAX    4096
#define CHATCTL_DROP_MAX      16


typedef struct {
    const char          *user;
    const char          *device;
    const char          *secret_arg;
    const char          *secret_file;
    const char          *claims_json;
    const char          *header_json;
    const char          *alg;
    const char          *sign;
    const char          *drop[CHATCTL_DROP_MAX];
    int                  ndrop;
    long long            ttl;
    long long            nbf;
    bool                 has_nbf;
    bool                 bad_signature;
    bool                 json;
} chatctl_token_args_t;


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


static bool
chatctl_alg(const char *name, const char *arg, ngx_chat_jwt_alg_e *alg)
{
    static const struct {
        const char          *name;
        ngx_chat_jwt_alg_e   alg;
    } algs[] = {
        { "HS256", NGX_CHAT_JWT_HS256 },
        { "HS384", NGX_CHAT_JWT_HS384 },
        { "HS512", NGX_CHAT_JWT_HS512 },
        { "none",  NGX_CHAT_JWT_UNSIGNED },
    };

    size_t  i;

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcasecmp(arg, algs[i].name) == 0) {
            *alg = algs[i].alg;
            return true;
        }
    }

    if (name != NULL) {
        fprintf(stderr, "chatctl: %s: HS256, HS384, HS512 or none, not %s\n",
                name, arg);
    }

    return false;
}


/* a JSON object from the command line, or NULL after saying why */
static json_t *
chatctl_object(const char *name, const char *text)
{
    json_t        *obj;
    json_error_t   err;

    obj = json_loads(text, 0, &err);

    if (obj == NULL) {
        fprintf(stderr, "chatctl: %s: %s\n", name, err.text);
        return NULL;
    }

    if (!json_is_object(obj)) {
        fprintf(stderr, "chatctl: %s: not a JSON object\n", name);
        json_decref(obj);
        return NULL;
    }

    return obj;
}


static bool
chatctl_merge(json_t *into, const char *name, const char *text)
{
    json_t  *obj;
    int      rc;

    if (text == NULL) {
        return true;
    }

    obj = chatctl_object(name, text);
    if (obj == NULL) {
        return false;
    }

    rc = json_object_update(into, obj);
    json_decref(obj);

    return rc == 0;
}


/* the signature part of a signed token, each byte XORed with 0x5a */
static bool
chatctl_spoil(unsigned char *token, size_t *len)
{
    size_t          i, n;
    unsigned char  *sig, raw[NGX_CHAT_JWT_MAC_MAX];

    sig = (unsigned char *) strrchr((char *) token, '.') + 1;

    if (ngx_chat_b64url_decode(sig, *len - (sig - token), raw, &n) != 0) {
        return false;
    }

    if (n == 0) {
        /* nothing to spoil: a signature of the right length, all zero */
        n = 32;
        memset(raw, 0, n);

    } else {
        for (i = 0; i < n; i++) {
            raw[i] ^= 0x5a;
        }
    }

    *len = (sig - token) + ngx_chat_b64url_encode(raw, n, sig);

    return true;
}


static bool
chatctl_has_drop(const chatctl_token_args_t *a, const char *name)
{
    int  i;

    for (i = 0; i < a->ndrop; i++) {
        if (strcmp(a->drop[i], name) == 0) {
            return true;
        }
    }

    return false;
}


static int
chatctl_mint(const chatctl_token_args_t *a, const char *secret)
{
    int                  i, rc;
    char                *htext, *ctext;
    size_t               len, size;
    json_t              *header, *claims;
    long long            now;
    unsigned char       *token;
    ngx_chat_jwt_alg_e   alg;

    alg = NGX_CHAT_JWT_HS256;
    rc = 1;
    htext = NULL;
    ctext = NULL;
    token = NULL;
    now = (long long) time(NULL);

    header = json_object();
    claims = json_object();

    if (header == NULL || claims == NULL) {
        fprintf(stderr, "chatctl: out of memory\n");
        goto done;
    }

    json_object_set_new(header, "alg", json_string(a->alg));
    json_object_set_new(header, "typ", json_string("JWT"));

    if (a->user) {
        json_object_set_new(claims, "sub", json_string(a->user));
    }
    json_object_set_new(claims, "dev", json_string(a->device));
    json_object_set_new(claims, "iat", json_integer(now));
    json_object_set_new(claims, "exp", json_integer(now + a->ttl));
    if (a->has_nbf) {
        json_object_set_new(claims, "nbf", json_integer(now + a->nbf));
    }

    if (!chatctl_merge(header, "--header", a->header_json)
        || !chatctl_merge(claims, "--claims", a->claims_json))
    {
        rc = 2;
        goto done;
    }

    for (i = 0; i < a->ndrop; i++) {
        json_object_del(claims, a->drop[i]);
    }

    /* the signature follows the header's alg unless --sign says */
    if (a->sign) {
        (void) chatctl_alg(NULL, a->sign, &alg);

    } else if (!chatctl_alg(NULL, a->alg, &alg)) {
        alg = NGX_CHAT_JWT_HS256;
    }

    htext = json_dumps(header, JSON_COMPACT);
    ctext = json_dumps(claims, JSON_COMPACT);

    if (htext == NULL || ctext == NULL) {
        fprintf(stderr, "chatctl: cannot write the token's JSON\n");
        goto done;
    }

    /* room for the longest signature: --bad-signature may lengthen one */
    size = ngx_chat_b64url_len(strlen(htext)) + 1
           + ngx_chat_b64url_len(strlen(ctext)) + 1
           + ngx_chat_b64url_len(NGX_CHAT_JWT_MAC_MAX) + 1;

    token = malloc(size);
    if (token == NULL) {
        fprintf(stderr, "chatctl: out of memory\n");
        goto done;
    }

    if (ngx_chat_jwt_sign(alg, (unsigned char *) htext, strlen(htext),
                          (unsigned char *) ctext, strlen(ctext),
                          (const unsigned char *) secret, strlen(secret),
                          token, size, &len)
        != 0)
    {
        fprintf(stderr, "chatctl: signing failed\n");
        goto done;
    }

    if (a->bad_signature && !chatctl_spoil(token, &len)) {
        fprintf(stderr, "chatctl: cannot spoil the signature\n");
        goto done;
    }

    if (a->json) {
        chatctl_print_json(json_pack("{s:s#,s:s?,s:s,s:I,s:I}",
                                     "token", (char *) token, len,
                                     "user", a->user, "device", a->device,
                                     "issued_at", (json_int_t) now * 1000,
                                     "expires_at",
                                     (json_int_t) (now + a->ttl) * 1000));
    } else {
        printf("%.*s\n", (int) len, (char *) token);
    }

    rc = 0;

done:

    free(token);
    free(htext);
    free(ctext);
    json_decref(header);
    json_decref(claims);

    return rc;
}


static int
chatctl_token(const chatctl_command_t *cmd, int argc, char **argv)
{
    static const struct option  longopts[] = {
        { "device",        required_argument, NULL, 'd' },
        { "ttl",           required_argument, NULL, 't' },
        { "nbf",           required_argument, NULL, 'n' },
        { "secret",        required_argument, NULL, 's' },
        { "secret-file",   required_argument, NULL, 'f' },
        { "claims",        required_argument, NULL, 'c' },
        { "drop",          required_argument, NULL, 'D' },
        { "header",        required_argument, NULL, 'H' },
        { "alg",           required_argument, NULL, 'a' },
        { "sign",          required_argument, NULL, 'S' },
        { "bad-signature", no_argument,       NULL, 'B' },
        { "json",          no_argument,       NULL, 'j' },
        { "help",          no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    int                    c;
    json_t                *obj;
    bool                   sub_given;
    static char            secret[CHATCTL_SECRET_MAX];
    ngx_chat_jwt_alg_e     alg;
    chatctl_token_args_t   a;

    memset(&a, 0, sizeof(a));
    a.device = "default";
    a.alg = "HS256";
    a.ttl = CHATCTL_DEFAULT_TTL;

    /* "+" would stop at the user; GNU getopt permutes, so options may come
     * before or after it */
    optind = 1;
    opterr = 0;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {

        case 'd':
            a.device = optarg;
            break;

        case 't':
            if (!chatctl_seconds("--ttl", optarg, &a.ttl)) {
                return 2;
            }
            break;

        case 'n':
            if (!chatctl_seconds("--nbf", optarg, &a.nbf)) {
                return 2;
            }
            a.has_nbf = true;
            break;

        case 's':
            a.secret_arg = optarg;
            break;

        case 'f':
            a.secret_file = optarg;
            break;

        case 'c':
            a.claims_json = optarg;
            break;

        case 'D':
            if (a.ndrop == CHATCTL_DROP_MAX) {
                fprintf(stderr, "chatctl: --drop: at most %d claims\n",
                        CHATCTL_DROP_MAX);
                return 2;
            }
            a.drop[a.ndrop++] = optarg;
            break;

        case 'H':
            a.header_json = optarg;
            break;

        case 'a':
            a.alg = optarg;
            break;

        case 'S':
            if (!chatctl_alg("--sign", optarg, &alg)) {
                return 2;
            }
            a.sign = optarg;
            break;

        case 'B':
            a.bad_signature = true;
            break;

        case 'j':
            a.json = true;
            break;

        case 'h':
            chatctl_help(cmd, stdout);
            return CHATCTL_OK;

        default:
            return chatctl_usage_error(cmd, "unknown option %s",
                                       argv[optind - 1]);
        }
    }

    sub_given = chatctl_has_drop(&a, "sub");

    if (a.claims_json) {
        obj = chatctl_object("--claims", a.claims_json);
        if (obj == NULL) {
            return 2;
        }
        sub_given = sub_given || json_object_get(obj, "sub") != NULL;
        json_decref(obj);
    }

    if (optind + 1 == argc) {
        a.user = argv[optind];

    } else if (optind != argc || !sub_given) {
        return chatctl_usage_error(cmd, "one user, please");
    }

    if (a.user && !ngx_chat_wire_valid_id(a.user, strlen(a.user))) {
        fprintf(stderr, "chatctl: user id: 1-%d characters of"
                " [A-Za-z0-9_.@-]\n", NGX_CHAT_WIRE_ID_MAX);
        return 2;
    }

    if (!ngx_chat_wire_valid_id(a.device, strlen(a.device))) {
        fprintf(stderr, "chatctl: device id: 1-%d characters of"
                " [A-Za-z0-9_.@-]\n", NGX_CHAT_WIRE_ID_MAX);
        return 2;
    }

    if (a.secret_arg) {
        snprintf(secret, sizeof(secret), "%s", a.secret_arg);

    } else if (a.secret_file) {
        if (!chatctl_read_secret(a.secret_file, secret, sizeof(secret))) {
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

    return chatctl_mint(&a, secret);
}


static const char  chatctl_token_help[] =
    "NAME\n"
    "    chatctl token - print a client token\n"
    "\n"
    "SYNOPSIS\n"
    "    chatctl token <user> [--device D] [--ttl SECONDS] [--nbf SECONDS]\n"
    "                  [--secret S | --secret-file F] [--json]\n"
    "                  [forging options]\n"
    "\n"
    "DESCRIPTION\n"
    "    Prints a JWT for <user>, signed HS256 with the secret of\n"
    "    chat_jwt_secret: header {\"alg\":\"HS256\",\"typ\":\"JWT\"},\n"
    "    claims sub, dev, iat, exp and, with --nbf, nbf. A client sends it\n"
    "    as \"Authorization: Bearer <token>\" or ?access_token=<token>.\n"
    "    The secret comes from --secret, else the first line of\n"
    "    --secret-file, else $CHAT_JWT_SECRET.\n"
    "\n"
    "OPTIONS\n"
    "    --device D         the dev claim (default \"default\")\n"
    "    --ttl SECONDS      exp from now (default 86400; may be negative)\n"
    "    --nbf SECONDS      an nbf claim, from now (may be negative)\n"
    "    --secret S, --secret-file F\n"
    "    --json             {\"token\",\"user\",\"device\",\"issued_at\","
    "\"expires_at\"}\n"
    "                       (times in ms)\n"
    "\n"
    "    Forging, for tests (what these give is not checked):\n"
    "    --claims JSON      members set in the claims, over those above;\n"
    "                       <user> may be left out when JSON sets sub\n"
    "    --drop NAME        leave the claim NAME out (repeat for more);\n"
    "                       --drop sub lets <user> be left out\n"
    "    --header JSON      members set in the header\n"
    "    --alg A            the header's alg, and the signature's when A is\n"
    "                       HS256, HS384, HS512 or none, in any case\n"
    "    --sign A           the signature: HS256, HS384, HS512 or none\n"
    "    --bad-signature    every signature byte XORed with 0x5a (an empty\n"
    "                       one becomes 32 zero bytes)\n"
    "\n"
    "EXAMPLES\n"
    "    CHAT_JWT_SECRET=$(cat /etc/ngx_chat/jwt_secret) \\\n"
    "        chatctl token alice --device phone --ttl 3600\n"
    "    chatctl token bob --secret-file /etc/ngx_chat/jwt_secret --json\n";


const chatctl_command_t  chatctl_token_command = {
    "token", "print a client token (a JWT signed with chat_jwt_secret)",
    chatctl_token, chatctl_token_help
};
