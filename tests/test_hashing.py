"""spin_io.hashing: one block-wise file hash for photo ids, cache keys, weights and reports."""

import hashlib

from spin_io.hashing import file_sha256


def test_known_digest_and_block_boundaries(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
    data = bytes(range(256)) * 1000  # 256 000 bytes: many blocks, a partial last one
    path.write_bytes(data)
    assert file_sha256(path, block=4096) == file_sha256(path) == hashlib.sha256(data).hexdigest()
