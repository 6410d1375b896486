"""Byte pins for the procedural domains in bench/data/domains/.

Committed benchmark results record the sha256 of the data they trained on (`train_data_sha256`)
and are keyed by those bytes, so a generator that draws one random number more, in another order,
or does its float arithmetic differently silently invalidates them. These hashes were taken from
the pre-split code (the single module bench/data.py, before it became the bench/data/ package);
they must never be regenerated to make a refactor pass. The (n=600, seed (0, 0)) pins of the eight
dit-transfer stand-ins equal the `train_data_sha256` of the committed tiny-profile results.
"""

import hashlib

import numpy as np
import pytest

from bench.data import GENERATORS, synthetic
from bench.spec import SyntheticDataset

SIZE = 16

# (generator, n, rng seed) -> sha256(images bytes + int64 labels bytes), rng = default_rng(seed).
# Taken from the ORIGINAL bench/data.py; committed results depend on them. Do not edit.
PINNED = {
    ("source-shapes", 64, (0, 0)): "dbcad73a0c211a45cb50b1fd344133cf4210442c9d3b3d445a0be61f4fb210f7",
    ("source-shapes", 64, (0, 1)): "80e2c4618f93d1a2039ec1bea79eba0ab4f14bdb0931104fc305f7d4ad7fe01b",
    ("source-shapes", 600, (0, 0)): "6b74cfa045eaff849160c7262c75937955752119254e0ec82551f5780ee774c3",
    ("source-shapes", 600, (0, 1)): "2d8a1c6493ee073d63a827511e5637bb0cad9c028dbbfbb50abc8229cb577f6c",
    ("plates", 64, (0, 0)): "c0c0dcc0d550fb404dd03055eeae191861895179546723a7734aec899cd07063",
    ("plates", 64, (0, 1)): "323c60ee16598b04fce3c06ae1e463bbeeb1a4572e38bbebe99ad7fae924ced4",
    ("plates", 600, (0, 0)): "7cec4f947372299f6ca7d1aa9dc5009fe639fb0a1da1f1255ebd077c1abd2e88",
    ("plates", 600, (0, 1)): "01cdfcf3bd1918d374e377f66271567a6db70cedd6240c3ee1bc578889b3e187",
    ("scenes", 64, (0, 0)): "cd129461dc8786ec7f8ab9b4749fccc627ea5c2bb68c714567f6c1adb5599c85",
    ("scenes", 64, (0, 1)): "8c7a13f43960a139b2b6c89ca0c7843e0a463726d2862942f04c7b9a4b513461",
    ("scenes", 600, (0, 0)): "481833095c31b4e6b41e1f94f6462a8fc741890932a6d0d4ead834a655614b4c",
    ("scenes", 600, (0, 1)): "f54a92d54086265f77bf63c53ba6bfe6f13b377134e18db41efbcb92fa14f54a",
    ("fungi", 64, (0, 0)): "b6a9e12dcd11ea689b9d1bcb8cd75d42bbdc6fe2d13922b3bcc7a2385a7e3361",
    ("fungi", 64, (0, 1)): "f62b7c5817a09a75413d7ded5743680898cbf0be7b67aadf7835a3b6bbad52e3",
    ("fungi", 600, (0, 0)): "949aa774c301d086145c0dfd0635bbee1d9704c5b1d612bfd41812bfed40b598",
    ("fungi", 600, (0, 1)): "345715aefd78750adddb37f883d929d19d80f1248b2e94d7495cfd45bc8a1fb5",
    ("digits", 64, (0, 0)): "86806ea3844c50c331e9c15cc7af15f2331d1dce50121dc5b8b2ed2c600b4f01",
    ("digits", 64, (0, 1)): "53658ef90abdd8cef6802abed9040431176dd191eea4b7f8b05a7ab308588f00",
    ("digits", 600, (0, 0)): "ee878e7ce82b4f27f08277dc00cacb49fe9cdd42392b30dd75a64e447e164817",
    ("digits", 600, (0, 1)): "7b59a83b9778311ea91d529fe15234229b782f40063ccc03fd69aaeea9dbd85a",
    ("birds", 64, (0, 0)): "15a4599b1a4d07108bbb0d8fc272f36a5877dc5303fdc417de7a7f62f3db6a0c",
    ("birds", 64, (0, 1)): "cb92ab989f2101ccfb233381249158f7f0c19aa2f5405803c7983317233e87d9",
    ("birds", 600, (0, 0)): "af13744f522b1e0b48d2c363625373a480ad36252f8c3347eac9718846238a31",
    ("birds", 600, (0, 1)): "d0b370f4c9c358914b6e3edb1f0e77cbcd5030b980970c2f8ff42253a2a4f782",
    ("art", 64, (0, 0)): "cbfc5594e70cfb52be5eda0dcf595c588e39c6686de6e4e0ea85565b4463cc8c",
    ("art", 64, (0, 1)): "c145cbc35d207915c821bddd4bb9cc0c7afbf119758579818d6b04142956e6b0",
    ("art", 600, (0, 0)): "699058c7d39a84f918c93fc954311257754dd83603ef63d8430619f6335e3298",
    ("art", 600, (0, 1)): "044bcfb86e6e43a3a343ab689e9a63540327f1db247299f789aadd91f42ed06c",
    ("flowers", 64, (0, 0)): "a6826626323bcb86004c74c32b783d0f4f356dcf17760c54b63cedfe4c283029",
    ("flowers", 64, (0, 1)): "ddaae3f33ea07e7ba025bdc033357d415f8a1587e9d2ce0ffbb99758b047180c",
    ("flowers", 600, (0, 0)): "62fa7a8dd44d3413316660b08866ab8ba293a6392f2fcea01c722282b92e97bb",
    ("flowers", 600, (0, 1)): "833cb49347b4ed5a471b5893f072917ef864b1e7244cd0beb5062985adc0ac57",
    ("cars", 64, (0, 0)): "cd0d75a58400d732c28a4ad331d016eea0df3dcbda623a0f883c5dcbac003680",
    ("cars", 64, (0, 1)): "15f37bee4b0da5f385f1fb57f1dd175d26bef3ddd5c96790d2541f925a64a658",
    ("cars", 600, (0, 0)): "64c043995f2db9beb1fc3c50e999ad5b007d46f1d64a187bb7c9fb2b3250aedb",
    ("cars", 600, (0, 1)): "f2e269fb2cf7783043ad3d61b919a40aedceada1299c769813f24040e9a02df0",
    # Limited-data stand-ins (CelebA, Pokemon, MetFaces): added after the split, pinned from their
    # first version in bench/data/domains/; the same rule applies, never regenerate them.
    ("faces", 64, (0, 0)): "9c8ddf428b183f13269d0d028eb1408b6697b71ec673d5ba86c900a680f04473",
    ("faces", 64, (0, 1)): "64ed0622710c67b714092291b9214aba36d3b27b7442d97cf03ae68e942bb3ea",
    ("faces", 600, (0, 0)): "769eda66767611abf3b333301f201a386e589a491511467263ba7aecf206429b",
    ("faces", 600, (0, 1)): "4e062a6d42c941e9c83eb09cff99873670bbebbdea7359c8006586fcaf3a776a",
    ("creatures", 64, (0, 0)): "5281fef8e195680f324366e57c89f85416e58c1586d7f438ef42b5391957b112",
    ("creatures", 64, (0, 1)): "9a4354522f49a660d293acd8f5e6a1fdb10542912b24c894af6432094c7d08d4",
    ("creatures", 600, (0, 0)): "33eefef26362ac8013c4c4d63e5ef20304b8eca06c1c93d7eb262785e3cc6d96",
    ("creatures", 600, (0, 1)): "c49fcebb73873a73578110c0ce3f567f5f0364340b5a316ca6456b24c6b4dd47",
    ("portraits", 64, (0, 0)): "8a7e902c190d51bc7ec310ffb51319dae646587c9d8afe80ee99248b1764cb1e",
    ("portraits", 64, (0, 1)): "5d24e42f2b2be687a186d790f5fb43325941ec500ac9806857dce36784c6c590",
    ("portraits", 600, (0, 0)): "29619441d44a9293e80f6765b11e1f7dab1fee82e81d58ed95fec741a6ad5a08",
    ("portraits", 600, (0, 1)): "972c50191d8e6508e7061944d757ae374edcd98e55e28d30fa270a2f6decd0ee",
}


def _sha256(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()  # the same digest as ImageSet.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return h.hexdigest()


def test_every_pinned_generator_is_still_registered():
    assert set(name for name, _, _ in PINNED) <= set(GENERATORS)


@pytest.mark.parametrize(("name", "n", "seed"), sorted(PINNED))
def test_generator_bytes_match_the_pre_split_code(name, n, seed):
    images, labels = GENERATORS[name](n, np.random.default_rng(list(seed)), SIZE)
    assert images.dtype == np.uint8 and images.shape == (n, SIZE, SIZE, 3)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert _sha256(images, labels) == PINNED[name, n, seed]


@pytest.mark.parametrize("name", sorted({name for name, _, _ in PINNED}))
def test_synthetic_splits_draw_the_pinned_streams(name):
    """`synthetic` maps train -> seed stream (seed, 0) and eval -> (seed, 1); results rely on that too."""
    spec = SyntheticDataset(generator=name, num_train=600, num_eval=64, seed=0)
    assert synthetic(spec, "train", SIZE).sha256() == PINNED[name, 600, (0, 0)]
    assert synthetic(spec, "eval", SIZE).sha256() == PINNED[name, 64, (0, 1)]
