import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmfabric import keys

# RFC 5869 appendix A, test cases 1-3 (SHA-256).
RFC5869 = [
    ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9", 42,
     "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    ("".join(f"{i:02x}" for i in range(0x00, 0x50)),
     "".join(f"{i:02x}" for i in range(0x60, 0xb0)),
     "".join(f"{i:02x}" for i in range(0xb0, 0x100)), 82,
     "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
     "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    ("0b" * 22, "", "", 42,
     "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_hkdf_rfc5869_vectors(ikm, salt, info, length, prk, okm):
    ikm, salt, info = bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info)
    assert keys.hkdf_extract(salt, ikm).hex() == prk
    assert keys.hkdf_expand(bytes.fromhex(prk), info, length).hex() == okm
    assert keys.hkdf(ikm, salt, info, length).hex() == okm


def test_sa_key_is_36_bytes_and_stable():
    key = keys.sa_key("secret", "appnet", 300, "10.0.0.1", "10.0.0.2", 1)
    assert len(key) == 36
    # Pinned: a change here would make hosts on different versions disagree.
    assert key == keys.sa_key(b"secret", "appnet", 300, "10.0.0.1", "10.0.0.2", 1)
    assert key.hex() == keys.hkdf(b"secret", keys.SALT, b"esp-aead|appnet|300|10.0.0.1|10.0.0.2|1", 36).hex()


ADDRS = [f"172.30.0.{i}" for i in range(11, 17)]


def test_keys_distinct_per_pair_direction_generation_overlay():
    seen = {}
    for (src, dst), gen, (name, vni) in itertools.product(
            itertools.permutations(ADDRS, 2), (1, 2), (("appnet", 300), ("dbnet", 301))):
        key = keys.sa_key("secret", name, vni, src, dst, gen)
        assert key not in seen, (seen.get(key), (src, dst, gen, name))
        seen[key] = (src, dst, gen, name)
    assert keys.sa_key("other", "appnet", 300, ADDRS[0], ADDRS[1], 1) != keys.sa_key(
        "secret", "appnet", 300, ADDRS[0], ADDRS[1], 1)


def test_empty_secret_is_refused():
    with pytest.raises(ValueError, match="empty"):
        keys.sa_key("", "appnet", 300, "a", "b", 1)


def test_spi_layout_and_ownership():
    spi = keys.sa_spi("appnet", 300, "10.0.0.1", "10.0.0.2", 7)
    assert keys.spi_generation(spi) == 7
    assert spi > 255  # 1..255 are reserved by RFC 4303
    assert keys.is_own_spi(spi, "appnet", 300, "10.0.0.1", "10.0.0.2")
    assert not keys.is_own_spi(spi, "appnet", 300, "10.0.0.2", "10.0.0.1")
    assert not keys.is_own_spi(spi, "dbnet", 301, "10.0.0.1", "10.0.0.2")
    assert keys.sa_spi("appnet", 300, "10.0.0.1", "10.0.0.2", 8) != spi


def test_spis_unique_per_receiver_in_a_cluster():
    sas = [{"dst": dst, "spi": keys.sa_spi("appnet", 300, src, dst, gen)}
           for src, dst in itertools.permutations(ADDRS, 2) for gen in (1, 2)]
    assert keys.spi_collisions(sas) == []
    assert keys.spi_collisions(sas + sas[:1]) == [(sas[0]["dst"], sas[0]["spi"])]


def test_reqid_carries_vni_and_generation():
    reqid = keys.sa_reqid(300, 4)
    assert keys.reqid_generation(reqid, 300) == 4
    assert keys.reqid_generation(reqid, 301) is None


def test_generation_wraps_and_is_checked():
    assert keys.next_generation(1) == 2
    assert keys.next_generation(255) == 1
    for bad in (0, 256):
        with pytest.raises(ValueError):
            keys.check_generation(bad)


def test_plan_generations_phases():
    assert keys.plan_generations("converge", None, set(), None) == ({1}, 1)
    assert keys.plan_generations("converge", None, {1, 2}, 1) == ({1, 2}, 1)
    assert keys.plan_generations("add_inbound", 2, {1}, 1) == ({1, 2}, 1)
    assert keys.plan_generations("switch_outbound", 2, {1, 2}, 1) == ({1, 2}, 2)
    assert keys.plan_generations("retire_old", 2, {1, 2}, 2) == ({2}, 2)
    with pytest.raises(ValueError, match="explicit generation"):
        keys.plan_generations("add_inbound", None, {1}, 1)


def _apply(phase, new, host):
    sa_gens, pol = keys.plan_generations(phase, new, host["sa"], host["out"])
    host["sa"], host["out"] = sa_gens, pol


@settings(max_examples=200)
@given(st.integers(min_value=2, max_value=6), st.integers(min_value=1, max_value=255), st.randoms())
def test_rotation_never_sends_what_a_peer_cannot_receive(n_hosts, current, rnd):
    """Phases run on all hosts in turn, hosts within a phase in any order."""
    new = keys.next_generation(current)
    hosts = [{"sa": {current}, "out": current} for _ in range(n_hosts)]
    for phase in ("add_inbound", "switch_outbound", "retire_old"):
        order = list(range(n_hosts))
        rnd.shuffle(order)
        for i in order:
            _apply(phase, new, hosts[i])
            for a, b in itertools.permutations(hosts, 2):
                # a sends with its out generation; b must hold that SA (both sides install per pair).
                assert a["out"] in b["sa"] and a["out"] in a["sa"], (phase, hosts)
    assert all(h == {"sa": {new}, "out": new} for h in hosts)
