/*
 * "policyd explain": the decision for a request described on the command
 * line, from the policy file or from the running policyd, without sending
 * anything to a provider.
 */

#ifndef TG_EXPLAIN_H
#define TG_EXPLAIN_H


/* argv[0] is "explain".  Returns the process's exit status. */
int tg_explain_main(int argc, char **argv);


#endif /* TG_EXPLAIN_H */
