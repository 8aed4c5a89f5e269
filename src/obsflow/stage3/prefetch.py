"""A cache hint for the drizzle kernels: fetch an accumulator element before it is written.

The kernels' deposits land on output rows that an input row crosses (every few input pixels
when the input is rotated against the output), so the processor's own prefetcher, which
follows sequential addresses, misses most of those lines; a point-kernel deposit waited
~16 ns on memory per input pixel against ~1 ns in cache (obsflow docs/benchmarks.md).
:func:`prefetch_write` asks for the line a few dozen input pixels ahead (LLVM's
``llvm.prefetch``: a hint, never a fault, nothing where the processor has no such
instruction); the results do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["prefetch_write"]


def _prefetch_write(typingctx, arr, i0, i1, i2):  # type: ignore[no-untyped-def]
    """Typing and code of :data:`prefetch_write`."""
    if not (isinstance(arr, types.Array) and arr.ndim == 3):
        return None
    sig = types.void(arr, i0, i1, i2)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, a, t, types.intp)
               for a, t in zip(args[1:], signature.args[1:], strict=True)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # the intrinsic's name carries its pointer type: "p0" (opaque pointers), "p0i8" (older)
        name = "llvm.prefetch.p0" if str(i8p) == "ptr" else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name)
        # write, keep in all cache levels, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


prefetch_write: Callable[..., None] = intrinsic(_prefetch_write)
"""``prefetch_write(arr, i0, i1, i2)`` in compiled code: hint that ``arr[i0, i1, i2]`` (a 3-d
array, in-bounds indices) is written soon."""
