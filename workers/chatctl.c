/*
 * chatctl.c: the administration tool of ngx_chat: one table of commands,
 * each in a file of its own (chatctl.h lists them), each with a manual
 * (chatctl <command> --help) and --json output.
 */

#include <string.h>

#include "chatctl.h"


static const chatctl_command_t  *chatctl_commands[] = {
    &chatctl_token_command,
    &chatctl_migrate_command,
    &chatctl_sessions_command,
    &chatctl_kick_command,
    &chatctl_revoke_command,
    &chatctl_groups_command,
    &chatctl_message_command,
    &chatctl_stats_command,
    NULL
};


static void
chatctl_overview(FILE *f)
{
    size_t  i;

    fprintf(f,
        "NAME\n"
        "    chatctl - operate ngx_chat\n"
        "\n"
        "SYNOPSIS\n"
        "    chatctl <command> [arguments] [--json] [options]\n"
        "    chatctl <command> --help\n"
        "\n"
        "COMMANDS\n");

    for (i = 0; chatctl_commands[i]; i++) {
        fprintf(f, "    %-10s %s\n", chatctl_commands[i]->name,
                chatctl_commands[i]->summary);
    }

    fprintf(f,
        "\n"
        "DESCRIPTION\n"
        "    chatctl reads PostgreSQL (read-only) and Redis, and changes\n"
        "    things through Kafka, as the clients do, so that the workers\n"
        "    apply an operator's change in order with everything else (kick\n"
        "    alone writes to Redis). Every command takes --json and --help.\n"
        "\n"
        "EXIT STATUS\n"
        "    0 done, 1 a server failed or the change was not applied in\n"
        "    time, 2 a usage error, 3 no such session, group, member or\n"
        "    message.\n");
}


int
main(int argc, char **argv)
{
    size_t  i;

    if (argc < 2) {
        chatctl_overview(stderr);
        return CHATCTL_USAGE;
    }

    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0
        || strcmp(argv[1], "-h") == 0)
    {
        if (argc > 2) {
            for (i = 0; chatctl_commands[i]; i++) {
                if (strcmp(argv[2], chatctl_commands[i]->name) == 0) {
                    chatctl_help(chatctl_commands[i], stdout);
                    return CHATCTL_OK;
                }
            }
        }

        chatctl_overview(stdout);
        return CHATCTL_OK;
    }

    for (i = 0; chatctl_commands[i]; i++) {
        if (strcmp(argv[1], chatctl_commands[i]->name) == 0) {
            return chatctl_commands[i]->run(chatctl_commands[i], argc - 1,
                                            argv + 1);
        }
    }

    fprintf(stderr, "chatctl: no command %s\n\n", argv[1]);
    chatctl_overview(stderr);

    return CHATCTL_USAGE;
}
