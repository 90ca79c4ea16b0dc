"""The capability probe's reasoning, with scripted probe results."""

import pytest
from swarmfabric import kernelcaps


def scripted(failures):
    """run() that fails the probes whose argv contains a key of ``failures`` with its message."""
    calls = []

    def run(argv, data=None):
        calls.append((argv, data))
        words = " ".join(argv) + " " + (data or "")
        for marker, err in failures.items():
            if argv[0] == "unshare" and marker in words:
                return 2, "", f"Error: {err}.\n"
        return 0, "", ""
    return run, calls


def test_full_kernel_has_nothing_missing_and_probes_in_throwaway_netns():
    run, calls = scripted({})
    assert kernelcaps.missing_capabilities(run) == []
    probes = [argv for argv, _data in calls if argv[0] == "unshare"]
    # one ip batch (vxlan, xfrm policy, AEAD SA) and one nft call: few processes on slow hosts
    assert len(probes) == 2
    assert all(c[:3] == ["unshare", "--net", "--"] for c in probes)
    batch = next(data for argv, data in calls if argv[-2:] == ["-batch", "-"])
    assert len(batch.splitlines()) == 3 and "rfc4106(gcm(aes))" in batch and "flag esn" in batch


def test_a_failed_batch_is_explained_probe_by_probe():
    run, calls = scripted({"xfrm policy": "Operation not supported"})
    missing = kernelcaps.missing_capabilities(run)
    assert missing == ["xfrm policies (xfrm_user): Operation not supported"]
    singles = [data for argv, data in calls if argv[-2:] == ["-batch", "-"]][1:]
    assert [len(d.splitlines()) for d in singles] == [1, 1, 1]


def test_this_machine_no_esp_no_gcm():
    run, _ = scripted({"rfc4106(gcm(aes))": "Requested AEAD algorithm not found",
                       "ecb(cipher_null)": "Requested type not found"})
    missing = kernelcaps.missing_capabilities(run)
    assert missing == ["ESP for IPv4 (esp4): Requested type not found",
                       "the AEAD cipher rfc4106(gcm(aes)) (crypto modules gcm and aes): "
                       "Requested AEAD algorithm not found"]
    msg = kernelcaps.capability_message("appnet", missing)
    assert msg.startswith("Cannot enable encryption on overlay appnet: this kernel lacks ESP for IPv4 (esp4)")
    assert "Nothing was changed" in msg


def test_esp_present_gcm_missing():
    run, _ = scripted({"rfc4106(gcm(aes))": "Requested AEAD algorithm not found"})
    missing = kernelcaps.missing_capabilities(run)
    assert len(missing) == 1 and "rfc4106(gcm(aes))" in missing[0]


@pytest.mark.parametrize(("marker", "word"), [("vxlan", "VXLAN"), ("policy", "xfrm policies"), ("nft", "nftables")])
def test_other_gaps_are_named(marker, word):
    run, _ = scripted({marker: "Operation not supported"})
    missing = kernelcaps.missing_capabilities(run)
    assert any(word in m for m in missing), missing


def test_plain_fabric_only_probes_vxlan():
    run, calls = scripted({"rfc4106(gcm(aes))": "x"})
    assert kernelcaps.missing_capabilities(run, encrypted=False) == []
    assert [data.split()[:2] for argv, data in calls if argv[0] == "unshare"] == [["link", "add"]]
