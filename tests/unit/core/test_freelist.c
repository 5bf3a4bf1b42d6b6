/*
 * core/freelist.h: blocks come back for reuse, at most FC_FREELIST_MAX of
 * them and at most FC_FREELIST_MAX_BYTES, so that a spike of large request
 * buffers does not stay allocated for good.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "freelist.h"

#include <string.h>

static void *blocks[FC_FREELIST_MAX + 100];

/* Gets n blocks of size, then gives them all back. */
static void spike(struct fc_freelist *l, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        blocks[i] = fc_freelist_get(l, size);
        assert_non_null(blocks[i]);
        memset(blocks[i], 0xa5, size); /* the whole size is usable */
    }
    for (size_t i = 0; i < n; i++)
        fc_freelist_put(l, blocks[i], size);
}

static void test_blocks_are_reused(void **state)
{
    struct fc_freelist l = {0};
    void *a = fc_freelist_get(&l, 100);
    fc_freelist_put(&l, a, 100);
    assert_int_equal(l.count, 1);
    assert_ptr_equal(fc_freelist_get(&l, 100), a); /* the same block, no malloc */
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
    fc_freelist_put(&l, a, 100);
    fc_freelist_clear(&l);
    assert_null(l.head);
}

static void test_small_blocks_capped_by_count(void **state)
{
    struct fc_freelist l = {0};
    spike(&l, FC_FREELIST_MAX + 100, 64);
    assert_int_equal(l.count, FC_FREELIST_MAX);
    assert_int_equal(l.bytes, (size_t)FC_FREELIST_MAX * 64);
    fc_freelist_clear(&l);
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
}

static void test_large_blocks_capped_by_bytes(void **state)
{
    /* Request memory at max_header_bytes = 1 MiB is about 2 MiB a block. */
    struct fc_freelist l = {0};
    size_t size = 2u << 20;
    spike(&l, 100, size);
    assert_int_equal(l.count, FC_FREELIST_MAX_BYTES / size);
    assert_true(l.bytes <= FC_FREELIST_MAX_BYTES);
    /* What is kept comes back first; beyond it, new blocks. */
    for (uint32_t i = 0; i < FC_FREELIST_MAX_BYTES / size; i++)
        blocks[i] = fc_freelist_get(&l, size);
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
    for (uint32_t i = 0; i < FC_FREELIST_MAX_BYTES / size; i++)
        fc_freelist_put(&l, blocks[i], size);
    fc_freelist_clear(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_are_reused),
        cmocka_unit_test(test_small_blocks_capped_by_count),
        cmocka_unit_test(test_large_blocks_capped_by_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
