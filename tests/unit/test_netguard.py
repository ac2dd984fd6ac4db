"""Every spelling of a loopback or metadata address is seen for what it is."""

from __future__ import annotations

import ipaddress

import pytest

from heablcoin_mcp.core.netguard import check_target, classify, embedded_ipv4
from heablcoin_mcp.errors import InvalidInput

LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1.2.3", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:0:127.0.0.1",
                      "64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::", "2002:7f00:1:0:1::",
                      "2001:0:4136:e378:8000:63bf:80ff:fffe"]
METADATA_SPELLINGS = ["169.254.169.254", "::169.254.169.254", "::ffff:169.254.169.254", "::ffff:0:169.254.169.254",
                      "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "fe80::1", "fd00:ec2::254", "0.0.0.0", "::",
                      "224.0.0.1", "ff02::1", "240.0.0.1"]
PRIVATE = ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "fc00::1", "fd12:3456::1", "::ffff:10.0.0.1",
           "2002:0a00:0001::"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::"]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS + PRIVATE)
def test_loopback_and_private_spellings_are_private(spelling: str) -> None:
    assert classify(ipaddress.ip_address(spelling)) == "private"


@pytest.mark.parametrize("spelling", METADATA_SPELLINGS)
def test_link_local_metadata_and_reserved_spellings_are_forbidden(spelling: str) -> None:
    assert classify(ipaddress.ip_address(spelling)) == "forbidden"


@pytest.mark.parametrize("spelling", PUBLIC)
def test_public_addresses_stay_public_however_spelled(spelling: str) -> None:
    assert classify(ipaddress.ip_address(spelling)) == "public"


def test_the_ipv4_inside_a_6to4_address_is_read_from_the_right_bits() -> None:
    assert embedded_ipv4(ipaddress.IPv6Address("2002:c000:0204::1")) == ipaddress.IPv4Address("192.0.2.4")


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_a_url_on_any_loopback_spelling_is_refused_unless_private_targets_are_allowed(spelling: str) -> None:
    host = f"[{spelling}]" if ":" in spelling else spelling
    with pytest.raises(InvalidInput, match="non-public"):
        check_target(f"http://{host}:8080/hook", what="callback_url", allow_private=False, setting="X")
    check_target(f"http://{host}:8080/hook", what="callback_url", allow_private=True, setting="X")


@pytest.mark.parametrize("url", [f"http://[{s}]/x" if ":" in s else f"http://{s}/x" for s in METADATA_SPELLINGS]
                         + ["http://metadata.google.internal/x", "http://METADATA.GOOGLE.INTERNAL./x"])
def test_a_metadata_or_link_local_url_is_refused_even_when_private_targets_are_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="never allowed"):
        check_target(url, what="callback_url", allow_private=True, setting="X")


@pytest.mark.parametrize("url", ["ftp://example.org/x", "http://user:pw@8.8.8.8/x", "http:///x", "http://8.8.8.8:99999/"])
def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_target(url, what="callback_url", allow_private=True, setting="X")
