"""The URLconf puts the download paths first (Django tries patterns in order, and each pattern tried costs a
request a regular expression and a list): that order is safe only while no other route's URL is caught by a
pattern before its own. Every named route, reversed with sample arguments, resolves to itself."""

from django.urls import NoReverseMatch, get_resolver, resolve, reverse

HEX = "ab" * 16
SAMPLES = {
    "repo_id": "facebook/opt-175b",
    "namespace": "facebook",
    "name": "opt-175b",
    "public_id": HEX,
    "attachment_id": HEX,
    "member_id": HEX,
    "invitation_id": HEX,
    "ror_id": "0abcdef12",
    "key": "intended_use",
    "number": "1",
    "path": "model-00001.safetensors",
    "revision": "main",
    "state": "pending",
    "token": "t0ken",
    "ticket": "t1cket",
    "signature": "s1g",
    "expires": 1,
    "pk": 1,
    "slug": "opt",
    "fmt": "json",
    "kind": "grant",
    "version": "1.0",
}


# allauth's connections page, replaced on purpose by the account's identities page (portal/urls.py).
REPLACED = {"socialaccount_connections"}


def named_routes(patterns, prefix=""):
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            namespace = f"{pattern.namespace}:" if pattern.namespace else ""
            yield from named_routes(pattern.url_patterns, prefix + namespace)
        elif pattern.name:
            yield prefix + pattern.name, pattern


def test_every_named_route_resolves_to_itself():
    checked, shadowed = 0, []
    for name, pattern in named_routes(get_resolver().url_patterns):
        groups = list(pattern.pattern.regex.groupindex)
        if name in REPLACED or any(group not in SAMPLES for group in groups):
            continue
        try:
            url = reverse(name, kwargs={group: SAMPLES[group] for group in groups})
        except NoReverseMatch:  # a converter or a pattern the samples do not fit
            continue
        checked += 1
        if resolve(url).url_name != name.rpartition(":")[2]:
            shadowed.append(f"{name}: {url} -> {resolve(url).url_name}")
    assert checked >= 240  # of about 330 named routes; the rest need a converter or a value the samples lack
    assert not shadowed, shadowed


def test_the_download_paths_come_before_the_pages():
    names = [name for name, _ in named_routes(get_resolver().url_patterns)]
    downloads = [names.index(n) for n in ("storage-file", "download-relay", "hf-resolve")]
    assert max(downloads) < names.index("catalog") < names.index("release-detail")
