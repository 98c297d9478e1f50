"""Fuzz the `.vqz` parser: mutate valid files (bit flips, byte changes, truncation, extension,
splices, random headers, size, count and length claims) of every format version (3: a VQ-VAE's
code grids and an RQ-VAE's code stacks at several qualities; 2; 1) and check every
input is either decoded or refused with a clean `VQZFormatError` (a ValueError) — never another
exception, a crash or a hang — and that the reader's peak memory stays bounded: the largest
peak of one read (tracemalloc: Python and numpy allocations) and the process's peak RSS.

Records the number of inputs tried and the failures in benchmarks/RESULTS.md.

    python benchmarks/fuzz_vqz.py --seconds 180
"""

import argparse
import os
import random
import struct
import sys
import time
import tracemalloc
import traceback
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402


def _varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


#: version 1: where the header's fields start after the name, and their layout (image shape,
#: grid, K, image count, mode, batch, codes crc, payload length)
_V1_PREFIX = struct.Struct("<8sHH")
_V1_CLAIMS = {"height": (32, "H"), "width": (34, "H"), "images": (46, "I"), "payload": (57, "Q")}


def _v1_claim(data, rng):
    """A version-1 file whose image count, size or payload length claims a large value, with
    its trailing CRC32 rewritten so the claim (not the checksum) is what the reader meets."""
    name_length = _V1_PREFIX.unpack_from(data, 0)[2]
    field, (offset, code) = rng.choice(sorted(_V1_CLAIMS.items()))
    at = _V1_PREFIX.size + name_length + offset
    bits = struct.calcsize(code) * 8
    struct.pack_into("<" + code, data, at, rng.choice([2**k for k in range(7, bits + 1)]) - 1)
    data[-4:] = (zlib.crc32(bytes(data[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
    return data


def mutations(seed_files, rng):
    """An endless stream of `(kind, mutated bytes, index of the seed file)`; kinds 5 and 6 are
    size, count and length claims."""
    while True:
        source = rng.randrange(len(seed_files))
        data = bytearray(seed_files[source])
        kind = rng.randrange(8)
        if kind == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:  # overwrite bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:  # truncate
            del data[rng.randrange(len(data) + 1):]
        elif kind == 3:  # extend
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == 4 and len(data) > 8:  # splice two files
            other = rng.choice(seed_files)
            cut = rng.randrange(len(data))
            data = data[:cut] + other[rng.randrange(len(other)):]
        elif kind in (5, 6) and data[:4] in (b"VQZ\x02", b"VQZ\x03"):  # a large count, size or stream length
            claim = rng.choice([2**k for k in range(7, 36)]) - rng.randrange(2)
            at = rng.choice([9, 10, 11, 12]) if kind == 5 else rng.randrange(13, min(len(data), 40))
            data = data[:at] + _varint(claim) + data[at + 1 :]
        elif kind in (5, 6):  # version 1: a large image count, size or payload length
            data = _v1_claim(data, rng)
        else:  # random bytes behind a valid magic
            data = data[:4] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        yield kind, bytes(data), source


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import resource

    import numpy as np

    import vaezoo
    from vaezoo import codec, vqz, vqz_v1

    model = vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=1, prior={"filters": 8, "layers": 2},
                         context_model={"channels": 8, "layers": 1}, seed=0)
    raster = vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                          residual_channels=4, num_residual_blocks=1, prior=None,
                          context_model={"channels": 8, "layers": 1, "schedule": "raster"}, seed=0)
    rq = vaezoo.RQVAE(input_shape=(16, 16, 3), depth=3, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                      residual_channels=4, num_residual_blocks=1,
                      context_model={"channels": 8, "layers": 1, "condition_depths": 1}, seed=0)
    rng_np = np.random.default_rng(args.seed)
    seed_files, seed_models = [], []  # each file and the model it decodes with
    size_lists = ([(16, 16)], [(16, 16), (16, 16)], [(9, 70), (33, 8), (70, 70)])
    for sizes in size_lists:  # version 3: code grids
        grids = [rng_np.integers(0, 8, vqz.grid_shape(s, 4)).astype(np.int32) for s in sizes]
        seed_files += [codec.compress_codes(model, grids, sizes, mode=m) for m in ("context", "fixed")]
        seed_models += [model] * 2
        seed_files.append(codec.compress_codes(raster, grids, sizes))  # the same grids coded in raster order
        seed_models.append(raster)
    for sizes, quality in zip(size_lists, (1, 2, 3)):  # version 3: code stacks
        stacks = [rng_np.integers(0, 8, (*vqz.grid_shape(s, 4), 3)).astype(np.int32) for s in sizes]
        seed_files += [codec.compress_codes(rq, stacks, sizes, mode=m, quality=quality) for m in ("context", "fixed")]
        seed_models += [rq] * 2
    fixture = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vqz_v2_vq_vae_cifar.npz")
    with np.load(fixture) as f:  # version 2 (vq-vae-cifar's: parsed, then refused as another model's or decoded)
        seed_files.append(f["vqz"].tobytes())
        seed_models.append(model)
    codes = [rng_np.integers(0, 8, (n, 4, 4)).astype(np.int32) for n in (1, 3)]  # version 1
    seed_files += [vqz_v1.compress_codes(model, c, mode=m, model_name="fuzz") for c in codes for m in ("prior", "fixed")]
    seed_models += [model] * 4
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = random.Random(args.seed)
    counts = {"inputs": 0, "claims": 0, "decoded": 0, "refused cleanly": 0, "over a limit": 0,
              "other exceptions": 0}
    failures = []
    largest = (0, None)  # the largest traced peak of one read of a claim, and its input
    codec_models = {id(m): codec.codec_model(m) for m in (model, raster, rq)}  # built once, outside the traced reads
    deadline = time.time() + args.seconds
    for kind, data, source in mutations(seed_files, rng):
        if time.time() > deadline:
            break
        counts["inputs"] += 1
        claim = kind in (5, 6)
        counts["claims"] += claim
        if claim:  # traced alone: tracing every input would slow the fuzzing tenfold
            tracemalloc.start()
        try:
            codec.decompress_codes(codec_models[id(seed_models[source])], data)
            counts["decoded"] += 1
        except codec.VQZFormatError as error:
            counts["refused cleanly"] += 1
            counts["over a limit"] += "this reader accepts" in str(error)
        except Exception:  # anything else is a parser bug
            counts["other exceptions"] += 1
            if len(failures) < 5:
                failures.append((data[:64].hex(), traceback.format_exc(limit=3)))
        if claim:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if peak > largest[0]:
                largest = (peak, data)
    for sample, trace in failures:
        print("FAILURE on input starting", sample, "\n", trace)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"largest traced peak of one read of a claim: {largest[0] / 1e6:.2f} MB, on an input of {len(largest[1] or b'')} "
          f"bytes starting {(largest[1] or b'')[:16].hex()}")
    rows = [{"inputs tried": counts["inputs"], "of which claims": counts["claims"], "decoded": counts["decoded"],
             "refused with VQZFormatError": counts["refused cleanly"], "of which over a Limits bound":
             counts["over a limit"], "other exceptions": counts["other exceptions"],
             "largest peak of one read of a claim (MB)": f"{largest[0] / 1e6:.2f}",
             "peak RSS (MB)": f"{peak:.0f}", "growth while fuzzing (MB)": f"{peak - rss_before:.0f}"}]
    table = markdown_table(rows, list(rows[0]))
    print(table)
    append_results(".vqz parser fuzzing", table,
                   protocol=f"{args.seconds:.0f} s of mutations (bit flips, byte overwrites, truncation, extension, "
                            "splices, random bodies; a quarter are claims: version-3 and version-2 image counts, sizes, "
                            "qualities and stream lengths up to 2^35, version-1 image counts, sizes and payload "
                            f"lengths up to the field's maximum with the file's CRC32 rewritten) of {len(seed_files)} "
                            "valid files (version 3: a VQ-VAE's code grids, context-coded by a group-schedule and by "
                            "a raster-order context model, and an RQ-VAE's code stacks of qualities "
                            "1-3, context and fixed coding, one and several images of several sizes; version 2: "
                            "tests/fixtures/vqz_v2_vq_vae_cifar.npz; version 1: prior and fixed), each read with "
                            f"the model of its seed file, seed {args.seed}, default `vaezoo.vqz.Limits`; the largest "
                            "peak of one read of a "
                            "claim (tracemalloc, started for that read alone: Python and numpy allocations of "
                            "`codec.decompress_codes`), the peak RSS "
                            "of the whole process (ru_maxrss) and its growth after the model was built",
                   hardware=hardware_description())
    return 1 if counts["other exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
