/* policyd usage: totals from usage logs (usage_cli.c). */

#ifndef TG_USAGE_CLI_H
#define TG_USAGE_CLI_H

int tg_usage_main(int argc, char **argv);

#endif /* TG_USAGE_CLI_H */
