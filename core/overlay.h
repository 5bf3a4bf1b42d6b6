/*
 * The runtime overlay: the changes the runtime API made to the pools of the
 * configuration file (backends added, drained, put in maintenance,
 * weighed, removed). Generations are built from the file's config with the
 * overlay applied (fc_generation_build()), so the changes survive reloads;
 * with `state_file` they are written to disk and read back at the start,
 * so they survive restarts too.
 *
 * An entry is either a backend the runtime added (`runtime`: the file does
 * not have it), a change to one of the file's backends, or a change to a
 * backend that DNS gives (`dns`). The file keeps
 * the last word on what it names: once a reloaded file has a backend the
 * runtime added, or no longer has one the runtime changed, the entry goes
 * (fc_overlay_reconcile()) and the backend is the file's again.
 *
 * Plain data, main thread only.
 */
#ifndef FC_OVERLAY_H
#define FC_OVERLAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct fc_config;
struct fc_conf_backend;
struct fc_conf_pool;

/** A backend's administrative state. */
enum fc_backend_admin {
    FC_BACKEND_READY = 0, /**< in rotation (when healthy) */
    FC_BACKEND_DRAIN = 1, /**< no new requests; in-flight ones finish; health checks go on */
    FC_BACKEND_MAINT = 2, /**< as drain, and no health checks */
};

/** Where a backend comes from. */
enum fc_backend_source {
    FC_SOURCE_CONFIG = 0,  /**< the configuration file */
    FC_SOURCE_RUNTIME = 1, /**< the runtime API */
    FC_SOURCE_DNS = 2,     /**< an answer for a `resolve = true` or "srv:" entry (discovery.h) */
};

struct fc_overlay_entry {
    char *pool;
    char *address; /**< the runtime's: "127.0.0.1:9004"; a file backend's: as the file wrote it */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint8_t runtime; /**< added at run time: not one of the file's backends */
    uint8_t removed; /**< one of the file's backends, removed at run time */
    uint8_t admin;   /**< enum fc_backend_admin */
    /**
     * A backend that DNS gives (discovery.h): its state and weight apply
     * while DNS gives it, and again when DNS gives it again, for as long as
     * the file discovers backends for the pool.
     */
    uint8_t dns;
    uint32_t weight; /**< 1..1000; 0: the file's or DNS's (file and DNS backends only) */
    /**
     * A file backend read from the state file by a name (`localhost:9001`):
     * addr is unset until fc_overlay_reconcile() finds the file's backend
     * of that name (names are not resolved for the state file).
     */
    uint8_t unresolved;
};

struct fc_overlay {
    struct fc_overlay_entry *entries;
    uint32_t n, cap;
};

/** Text of a state ("ready", "drain", "maint"), and back (-1: none of them). */
const char *fc_backend_admin_name(int admin);
int fc_backend_admin_parse(const char *text);

/** The file's backend of `pool` at addr (same IP address and port), or NULL. */
const struct fc_conf_backend *fc_overlay_file_backend(const struct fc_conf_pool *pool,
                                                      const struct sockaddr_storage *addr);

/** Frees what o holds; o is empty (and reusable) after. */
void fc_overlay_free(struct fc_overlay *o);

/** A deep copy: 0 or FC_ENOMEM (then `to` is empty). */
int fc_overlay_copy(const struct fc_overlay *from, struct fc_overlay *to);

/** The entry for backend `addr` of `pool`, or NULL. */
struct fc_overlay_entry *fc_overlay_find(const struct fc_overlay *o, const char *pool,
                                         const struct sockaddr_storage *addr);

/**
 * Adds an entry (strings copied), or returns the one already there for that
 * pool and address. NULL: out of memory.
 */
struct fc_overlay_entry *fc_overlay_put(struct fc_overlay *o, const char *pool, const char *address,
                                        const struct sockaddr_storage *addr, socklen_t addr_len);

/** Removes entry e (a pointer into o). */
void fc_overlay_drop(struct fc_overlay *o, struct fc_overlay_entry *e);

/**
 * After a change to a file (or DNS) backend's entry: drops it when it no
 * longer changes anything (weight the file's, ready, not removed), so the
 * backend is plainly the file's (or DNS's). `file_weight` is the weight the
 * file (or DNS) gives it.
 */
void fc_overlay_tidy(struct fc_overlay *o, struct fc_overlay_entry *e, uint32_t file_weight);

/**
 * Fits the overlay to a (new) file: drops the entries of pools the file no
 * longer has, the runtime's (and DNS's) backends the file now has itself,
 * the changes to file backends the file no longer has, those to DNS
 * backends of a pool that no longer has `resolve = true` or `srv:` entries,
 * and those made needless (ready, the weight the file or DNS gives); each
 * is told in the log unless `quiet`. Entries kept take the file's spelling of their
 * address. Returns how many entries went.
 */
uint32_t fc_overlay_reconcile(struct fc_overlay *o, const struct fc_config *cfg, int quiet);

/**
 * The state file's content for o (JSON, one object): a string to free, or
 * NULL when out of memory.
 */
char *fc_overlay_to_json(const struct fc_overlay *o);

/**
 * Reads a state file's content into `out` (empty before). Returns 0, or
 * FC_EINVAL with what is wrong in err (then `out` is empty): the caller
 * reports it and goes on without the changes. An entry that is wrong on
 * its own (an address that does not parse) fails the whole file: a state
 * file is written only by fulcrum, so it is damaged.
 */
int fc_overlay_from_json(const char *text, size_t len, struct fc_overlay *out, char *err,
                         size_t err_cap);

#endif
