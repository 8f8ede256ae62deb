/* ddi_weak.c - stand-in for hawkBit DDI until ddi.c defines
 * srv_ddi_handle: a weak definition, replaced at link time by the real
 * one. Its own file, named to sort after ddi.c, so that a static-library
 * link pulls ddi.o (the first member defining the symbol) instead. */
#include "server.h"

__attribute__((weak)) void srv_ddi_handle(struct srv *s,
                                          const struct srv_req *req,
                                          const char *tenant,
                                          const char *rest,
                                          struct srv_resp *resp)
{
    (void)s;
    (void)req;
    (void)tenant;
    (void)rest;
    srv_resp_error(resp, 404, "no such endpoint (hawkBit DDI is not built "
                   "into this server)");
}
