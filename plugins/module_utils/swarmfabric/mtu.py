"""Inner MTU of a VXLAN overlay, optionally wrapped in ESP transport mode.

Outer frame on the underlay (IPv4), innermost last:

    IPv4 20 | [ESP SPI+seq 8 | IV 8] | UDP 8 | VXLAN 8 | Ethernet 14 | inner packet
            | [pad 0..3 | pad length 1 | next header 1 | ICV 16]

In transport mode ESP encrypts everything after the outer IP header. The
encrypted part plus the 2-byte trailer must end on a 4-byte boundary
(RFC 4303 2.4; AES-GCM itself needs no block padding, rfc4106 aligns to 4).
"""

IPV4_HEADER = 20
UDP_HEADER = 8
VXLAN_HEADER = 8
INNER_ETHERNET = 14
# 50: what plain VXLAN over IPv4 costs.
VXLAN_OVERHEAD = IPV4_HEADER + UDP_HEADER + VXLAN_HEADER + INNER_ETHERNET

ESP_SPI_SEQ = 8
ESP_IV = 8  # rfc4106(gcm(aes)): 64-bit explicit IV
ESP_ICV = 16  # 128-bit tag
ESP_TRAILER = 2  # pad length + next header
ESP_ALIGN = 4

MIN_INNER_MTU = 1280  # what the description accepts (IPv6 minimum)


def esp_payload_max(space):
    """Largest ESP payload whose payload + padding + trailer fits in ``space``."""
    aligned = space - space % ESP_ALIGN
    return aligned - ESP_TRAILER


def inner_mtu(underlay_mtu, encrypted):
    """The overlay device MTU for an underlay of ``underlay_mtu`` bytes."""
    underlay_mtu = int(underlay_mtu)
    if not encrypted:
        return underlay_mtu - VXLAN_OVERHEAD
    space = underlay_mtu - IPV4_HEADER - ESP_SPI_SEQ - ESP_IV - ESP_ICV
    # The ESP payload is the outer UDP datagram: UDP + VXLAN + Ethernet + inner.
    return esp_payload_max(space) - UDP_HEADER - VXLAN_HEADER - INNER_ETHERNET


def outer_size(inner, encrypted):
    """Bytes on the underlay for one inner packet of ``inner`` bytes (for tests and docs)."""
    if not encrypted:
        return inner + VXLAN_OVERHEAD
    payload = UDP_HEADER + VXLAN_HEADER + INNER_ETHERNET + inner
    pad = -(payload + ESP_TRAILER) % ESP_ALIGN
    return IPV4_HEADER + ESP_SPI_SEQ + ESP_IV + payload + pad + ESP_TRAILER + ESP_ICV


def resolve_mtu(wanted, underlay_mtu, encrypted):
    """``wanted`` is 'auto' or an int; returns the int MTU or raises ValueError."""
    if wanted in (None, "auto"):
        mtu = inner_mtu(underlay_mtu, encrypted)
        if mtu < MIN_INNER_MTU:
            raise ValueError(
                f"underlay MTU {underlay_mtu} leaves {mtu} bytes inside the overlay, below the minimum {MIN_INNER_MTU}"
            )
        return mtu
    try:
        return int(wanted)
    except (TypeError, ValueError):
        raise ValueError(f"mtu must be 'auto' or an integer, got {wanted!r}") from None
