"""The traffic model: visitors, their visits and page views, in nominal-time order.

Visits arrive as a Poisson process. Each visitor has a site, an IP that stays with them, a user
agent, a language, and is logged in (``user_id``), anonymous with a tracker cookie
(``anonymous_id``, sent by the richer tracker only) or anonymous without one. A visit is a few
page views separated by log-normal think times (a long tail: some gaps exceed the 5-minute
session gap, and some visitors come back later, so visitors have several sessions). Crawlers
browse longer and faster.

Page views are drawn in bulk with numpy, a time slice at a time: the visitors arriving in the
slice, all their visits and page views (returns included) at once, filed into the slices in which
they happen, so each slice comes out complete and in nominal-time order. Per-visitor attributes
and the rare per-view strings (external referrers, query strings) come from a ``random.Random``
seeded with the same seed, so the whole model is deterministic for a seed.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import json
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import Any, TypeVar

import numpy as np

from webtraffic.contract import user_agent_signature
from webtraffic.simulator import catalogs

T = TypeVar("T")


class WeightedChoice:
    """Draws from a fixed weighted population in O(log n) (``random.choices`` is O(n) a call)."""

    def __init__(self, population: Sequence[T], weights: Sequence[float]) -> None:
        self.population = list(population)
        self.cumulative: list[float] = []
        total = 0.0
        for weight in weights:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def draw(self, rng: random.Random) -> Any:
        """Returns one member, chosen with probability proportional to its weight."""
        index = bisect.bisect_right(self.cumulative, rng.random() * self.total)
        return self.population[min(index, len(self.population) - 1)]


@dataclass(frozen=True)
class TrafficProfile:
    """Shape of the simulated audience (shares are probabilities per new visitor)."""

    bot_share: float = 0.05
    logged_in_share: float = 0.2
    rich_tracker_share: float = 0.4
    return_share: float = 0.3
    non_routable_share: float = 0.03
    ipv6_share: float = 0.2
    mean_pages: float = 4.0
    think_median_s: float = 20.0
    think_sigma: float = 1.1
    return_after_s: tuple[float, float] = (330.0, 2400.0)
    extra_field_share: float = 0.05


@dataclass
class Visitor:
    """A simulated person or crawler; stable across their visits."""

    number: int
    site: catalogs.Site
    ip: str
    user_agent: dict[str, Any]
    ua_header: str
    device_class: str
    is_bot: bool
    language: str
    user_id: int | None
    anonymous_id: str | None
    rich_tracker: bool
    tz_offset_min: int
    key: str = ""
    const_json: str = ""  # the fields that never change for this visitor, serialised once
    pages_left: int = 0
    last_path: str | None = None
    visits: int = 0


@dataclass(slots=True)
class Views:
    """Page views as columns (one entry per page view), before event times are fixed.

    ``visitor`` indexes :attr:`TrafficModel.visitors`, ``page`` the model's page table;
    ``url`` and ``referrer`` hold JSON-quoted text; ``event_type`` is 0 page_view, 1 click,
    2 scroll; ``extra`` 0 none, else the index of an extra field the richer tracker sends.
    """

    nominal_ms: np.ndarray
    visitor: np.ndarray
    page: np.ndarray
    url: np.ndarray
    referrer: np.ndarray
    event_type: np.ndarray
    extra: np.ndarray
    serial: np.ndarray

    def take(self, index: np.ndarray) -> Views:
        """The page views at ``index``, in that order."""
        return Views(*(getattr(self, f)[index] for f in self.__slots__))

    @staticmethod
    def concat(parts: list[Views]) -> Views:
        """The page views of all parts, in order."""
        if len(parts) == 1:
            return parts[0]
        return Views(*(np.concatenate([getattr(p, f) for p in parts]) for f in Views.__slots__))


_LANGUAGES = catalogs.ACCEPT_LANGUAGES
_TZ_OFFSETS = (0, 0, 0, 60, 120, -300, -240, 330, 540)
TZ_SUFFIX = {
    offset: "Z"
    if offset == 0
    else f"{'+' if offset > 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    for offset in set(_TZ_OFFSETS)
}
_QUOTED_LANGUAGES = tuple(_quote(language) for language in _LANGUAGES)
_ACCEPT = '"accept":"text/html,application/xhtml+xml"'
_MOBILE_HINT = {
    "desktop": _ACCEPT + "}",
    "bot": _ACCEPT + "}",
    "mobile": _ACCEPT + ',"sec-ch-ua-mobile":"?1"}',
    "tablet": _ACCEPT + ',"sec-ch-ua-mobile":"?1"}',
}
EVENT_TYPES: tuple[str, ...] = ("page_view", "click", "scroll")
EXTRA_JSON: tuple[str, ...] = (
    "",
    ',"screen":{"w":390,"h":844}',
    ',"screen":{"w":1280,"h":844}',
    ',"screen":{"w":1920,"h":844}',
)


def _headers(visitor: Visitor) -> dict[str, str]:
    headers = {
        "user-agent": visitor.ua_header,
        "accept-language": visitor.language,
        "accept": "text/html,application/xhtml+xml",
    }
    if visitor.device_class in ("mobile", "tablet"):
        headers["sec-ch-ua-mobile"] = "?1"
    return headers


def _js(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _ua_json(ua: dict[str, Any]) -> str:
    def part(d: dict[str, Any]) -> str:
        return (
            f'"family":{_js(d["family"])},"major":{_js(d["major"])},'
            f'"minor":{_js(d["minor"])},"patch":{_js(d["patch"])}'
        )

    return f'{{{part(ua)},"device":{{{part(ua["device"])}}},"os":{{{part(ua["os"])}}}}}'


def _const_json(visitor: Visitor) -> str:
    """The fields that never change for a visitor, as JSON members with a leading comma.

    Built as text (the same bytes ``json.dumps`` gives with compact separators): this runs
    once per visitor, a hot path of its own.
    """
    headers = (
        f'{{"user-agent":{_quote(visitor.ua_header)},'
        f'"accept-language":{_quote(visitor.language)},'
        '"accept":"text/html,application/xhtml+xml"'
        + (',"sec-ch-ua-mobile":"?1"}' if visitor.device_class in ("mobile", "tablet") else "}")
    )
    user_id = "null" if visitor.user_id is None else str(visitor.user_id)
    text = (
        f',"user_id":{user_id},"academy_id":{visitor.site.academy_id},'
        f'"user_agent":{_ua_json(visitor.user_agent)},"headers":{headers},'
        f'"host":{_quote(visitor.site.host)},"ip":{_quote(visitor.ip)}'
    )
    if visitor.anonymous_id:
        text += f',"anonymous_id":{_quote(visitor.anonymous_id)}'
    return text


def _const_json_reference(visitor: Visitor) -> str:
    """:func:`_const_json` the slow, obvious way (the unit tests compare the two)."""
    fields: dict[str, Any] = {
        "user_id": visitor.user_id,
        "academy_id": visitor.site.academy_id,
        "user_agent": visitor.user_agent,
        "headers": _headers(visitor),
        "host": visitor.site.host,
        "ip": visitor.ip,
    }
    if visitor.anonymous_id:
        fields["anonymous_id"] = visitor.anonymous_id
    return "," + json.dumps(fields, separators=(",", ":"))[1:-1]


def format_ipv6(value: int) -> str:
    """``str(ipaddress.IPv6Address(value))``, without building the object.

    RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups as
    ``::`` (the first on a tie).
    """
    groups = [(value >> shift) & 0xFFFF for shift in range(112, -1, -16)]
    best_start, best_len, start, length = -1, 1, -1, 0
    for index, group in enumerate(groups):
        if group == 0:
            if length == 0:
                start = index
            length += 1
            if length > best_len:
                best_start, best_len = start, length
        else:
            length = 0
    text = [f"{group:x}" for group in groups]
    if best_start < 0:
        return ":".join(text)
    head = ":".join(text[:best_start])
    tail = ":".join(text[best_start + best_len :])
    return f"{head}::{tail}"


def _cdf(weights: Sequence[float]) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    return cumulative / cumulative[-1]


class _Network:
    """An address range as integers (``ipaddress`` arithmetic is slow on the hot path)."""

    __slots__ = ("base", "size", "version")

    def __init__(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        self.base = int(network.network_address)
        self.size = network.num_addresses
        self.version = network.version


class TrafficModel:
    """Generates page views in nominal-time order.

    Args:
        rng: The simulator's seeded random source.
        profile: Audience shape.
    """

    def __init__(
        self, seed: int, profile: TrafficProfile, worker: int = 0, workers: int = 1
    ) -> None:
        self.rng = random.Random(seed)  # the rare per-record strings
        self.np_rng = np.random.default_rng(seed)  # everything drawn in bulk
        self.profile = profile
        # Visitor numbers (and so user ids) are unique across the workers of a parallel run.
        self._worker, self._workers = worker, workers
        self._pages = {site.host: self._page_tree(site) for site in catalogs.SITES}
        self._v4 = self._ranges(catalogs.PUBLIC_V4)
        self._v6 = self._ranges(catalogs.PUBLIC_V6)
        self._private = [_Network(ipaddress.ip_network(c)) for c in catalogs.NON_ROUTABLE]
        self._v4_cdf = np.asarray(self._v4.cumulative) / self._v4.total
        self._v6_cdf = np.asarray(self._v6.cumulative) / self._v6.total
        self._human_cdf = _cdf([a[0] for a in catalogs.HUMAN_AGENTS])
        self._bot_cdf = _cdf([a[0] for a in catalogs.BOT_AGENTS])
        self._site_cdf = _cdf([s.weight for s in catalogs.SITES])
        self._site_text = [
            (f'"academy_id":{site.academy_id}', f'"host":{_quote(site.host)}')
            for site in catalogs.SITES
        ]
        self._human_quoted = [
            (_quote(a[2]), _quote(a[6]), _quote(a[4])) for a in catalogs.HUMAN_AGENTS
        ]
        self._bot_text = []
        for _, family, major, device, header in catalogs.BOT_AGENTS:
            user_agent: dict[str, Any] = {
                "family": family, "major": major, "minor": None, "patch": None,
                "device": {"family": device, "major": None, "minor": None, "patch": None},
                "os": {"family": "Other", "major": None, "minor": None, "patch": None},
            }  # fmt: skip
            self._bot_text.append(
                (_ua_json(user_agent), header, user_agent_signature(user_agent), "bot",
                 _MOBILE_HINT["bot"])
            )  # fmt: skip
        # One page table over all sites: path, JSON-quoted URL, and a CDF per site.
        self.paths: list[str] = []
        urls: list[str] = []
        self._page_cdf: list[tuple[int, np.ndarray]] = []
        for site in catalogs.SITES:
            tree = self._pages[site.host]
            self._page_cdf.append((len(self.paths), np.asarray(tree.cumulative) / tree.total))
            self.paths.extend(tree.population)
            urls.extend(_quote(f"https://{site.host}{path}") for path in tree.population)
        self._url_json = np.asarray(urls, dtype=object)
        # The visitor table, as columns (text only for visitors seen after the start).
        self.keep_visitors = False  # also keep Visitor objects (tests)
        self.visitors: list[Visitor] = []
        self.v_const: list[str] = []
        self.v_key: list[bytes] = []
        self.v_keystr: list[str] = []
        self.v_ip: list[str] = []
        self.v_device: list[str] = []
        self.v_crc = np.zeros(1024, dtype=np.int64)  # CRC32 of the key (Kafka partitioning)
        self.v_rich = np.zeros(0, dtype=bool)
        self.v_tz = np.zeros(0, dtype=np.int64)
        self.v_site = np.zeros(0, dtype=np.int64)
        self.v_bot = np.zeros(0, dtype=bool)
        self._buckets: dict[int, list[Views]] = {}
        self._serial = 0
        self._start_ms = 0
        self._chunk_ms = 60_000
        self._next_arrival = 0

    # --- static material -------------------------------------------------------------------

    def _page_tree(self, site: catalogs.Site) -> WeightedChoice:
        """A few hundred pages per site with Zipf-like popularity (a long tail)."""
        rng = random.Random(f"pages:{site.host}")  # the tree is fixed, whatever the seed
        paths = ["/"]
        for section in site.sections:
            paths.append(f"/{section}")
            for i in range(rng.randint(20, 80)):
                slug = "-".join(rng.sample(catalogs.SLUG_WORDS, 2))
                paths.append(f"/{section}/{slug}-{i}")
                if rng.random() < 0.3:
                    paths.extend(f"/{section}/{slug}-{i}/part-{n}" for n in range(1, 4))
        order = list(range(len(paths)))
        rng.shuffle(order[1:])
        weights = [0.0] * len(paths)
        for rank, index in enumerate(order, start=1):
            weights[index] = 1.0 / rank**1.1
        return WeightedChoice(paths, weights)

    @staticmethod
    def _ranges(table: tuple[tuple[str, float, str], ...]) -> WeightedChoice:
        return WeightedChoice(
            [_Network(ipaddress.ip_network(c)) for _, _, c in table], [w for _, w, _ in table]
        )

    # --- visitors, in bulk ----------------------------------------------------------------

    def _draw_visitors(self, n: int) -> dict[str, np.ndarray]:
        """Draws the attributes of ``n`` new visitors at once, as numbers (no text yet)."""
        rng, p = self.np_rng, self.profile
        u = rng.random((14, n))

        def pick(cdf: np.ndarray, values: np.ndarray) -> np.ndarray:
            return np.minimum(np.searchsorted(cdf, values, side="right"), len(cdf) - 1)

        bot = u[1] < p.bot_share
        private = u[2] < p.non_routable_share
        v6 = ~private & (u[3] < p.ipv6_share)
        net = np.where(
            private,
            np.minimum((u[4] * len(self._private)).astype(np.int64), len(self._private) - 1),
            np.where(v6, pick(self._v6_cdf, u[4]), pick(self._v4_cdf, u[4])),
        )
        return {
            "site": pick(self._site_cdf, u[0]),
            "bot": bot,
            "ip_kind": np.where(private, 2, np.where(v6, 1, 0)),
            "net": net,
            "ip_u": u[5],
            "agent": np.where(bot, pick(self._bot_cdf, u[6]), pick(self._human_cdf, u[6])),
            "ua_u": u[7:11].T,
            "logged_in": ~bot & (u[11] < p.logged_in_share),
            "rich": u[12] < p.rich_tracker_share,
            "language": np.minimum((u[13] * len(_LANGUAGES)).astype(np.int64), len(_LANGUAGES) - 1),
            "tz": rng.integers(0, len(_TZ_OFFSETS), n),
            "user_r": rng.integers(0, 16, n),
            "anonymous": rng.integers(0, 2**64, n, dtype=np.uint64),
        }

    def _materialise(self, draws: dict[str, np.ndarray], first: int, kept: np.ndarray) -> None:
        """Builds the text of the visitors at ``kept`` (local indices into ``draws``).

        Fills their rows of the visitor table (from ``first`` on): the constant JSON members,
        the Kafka key, the IP. Visitors with no page view after the start are never built.
        """
        site = draws["site"].tolist()
        bot = draws["bot"].tolist()
        ip_kind = draws["ip_kind"].tolist()
        net = draws["net"].tolist()
        ip_u = draws["ip_u"].tolist()
        agent = draws["agent"].tolist()
        ua_u = draws["ua_u"].tolist()
        logged_in = draws["logged_in"].tolist()
        rich = draws["rich"].tolist()
        language = draws["language"].tolist()
        user_r = draws["user_r"].tolist()
        anonymous = draws["anonymous"].tolist()
        tables = (self._v4.population, self._v6.population, self._private)
        v_const, v_key, v_keystr, v_ip, v_device = (
            self.v_const, self.v_key, self.v_keystr, self.v_ip, self.v_device
        )  # fmt: skip
        crc = self.v_crc
        sha256 = hashlib.sha256
        workers, worker = self._workers, self._worker
        for j in kept.tolist():
            network = tables[ip_kind[j]][net[j]]
            size = network.size
            value = network.base + (1 + int(ip_u[j] * (size - 2)) if size > 2 else 0)
            if network.version == 4:
                ip = f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
            else:
                ip = format_ipv6(value)
            if bot[j]:
                ua_json, header, signature, device_class, mobile = self._bot_text[agent[j]]
            else:
                ua_json, header, signature, device_class, mobile = self._human_text(
                    agent[j], ua_u[j]
                )
            number = (first + j) * workers + worker + 1
            site_j = self._site_text[site[j]]
            lang = _QUOTED_LANGUAGES[language[j]]
            headers = f'{{"user-agent":{_quote(header)},"accept-language":{lang},{mobile}'
            if logged_in[j]:
                user_id = 100_000 + number * 16 + user_r[j]
                key = f"u:{user_id}"
                text = f',"user_id":{user_id},'
            else:
                text = ',"user_id":null,'
                if rich[j]:
                    anonymous_id = f"{anonymous[j]:016x}"
                    key = f"a:{anonymous_id}"
                else:
                    key = "h:" + sha256(f"{ip}|{signature}".encode()).hexdigest()
            text += f'{site_j[0]},"user_agent":{ua_json},"headers":{headers},{site_j[1]}'
            text += f',"ip":"{ip}"'
            if rich[j] and not logged_in[j]:
                text += f',"anonymous_id":"{anonymous_id}"'
            i = first + j
            v_const[i] = text
            key_bytes = key.encode()
            v_key[i] = key_bytes
            v_keystr[i] = key
            v_ip[i] = ip
            v_device[i] = device_class
            crc[i] = zlib.crc32(key_bytes)
            if self.keep_visitors:
                self.visitors[i] = self._visitor_object(draws, j, number, ip, key, text)

    def _human_text(self, agent: int, u: list[float]) -> tuple[str, str, str, str, str]:
        """User-agent JSON, header, signature, device class and mobile hint of a person."""
        _, device_class, family, (lo, hi), os_family, (olo, ohi), device = catalogs.HUMAN_AGENTS[
            agent
        ]
        major = lo + int(u[0] * (hi - lo + 1))
        os_major = olo + int(u[1] * (ohi - olo + 1))
        patch = int(u[2] * 201)
        os_minor = int(u[3] * 7)
        q_family, q_device, q_os = self._human_quoted[agent]
        ua_json = (
            f'{{"family":{q_family},"major":"{major}","minor":"0","patch":"{patch}",'
            f'"device":{{"family":{q_device},"major":null,"minor":null,"patch":null}},'
            f'"os":{{"family":{q_os},"major":"{os_major}","minor":"{os_minor}","patch":null}}}}'
        )
        header = (
            f"Mozilla/5.0 ({os_family} {os_major}; {device}) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) {family.replace(' ', '')}/{major}.0 Safari/537.36"
        )
        signature = f"{family}|{major}|0|{patch}|{os_family}|{os_major}|{device}"
        return ua_json, header, signature, device_class, _MOBILE_HINT[device_class]

    def _visitor_object(
        self, draws: dict[str, np.ndarray], j: int, number: int, ip: str, key: str, text: str
    ) -> Visitor:
        """The visitor at local index ``j`` as an object (tests check the text against it)."""
        if draws["bot"][j]:
            _, family, major, device, header = catalogs.BOT_AGENTS[int(draws["agent"][j])]
            user_agent: dict[str, Any] = {
                "family": family, "major": major, "minor": None, "patch": None,
                "device": {"family": device, "major": None, "minor": None, "patch": None},
                "os": {"family": "Other", "major": None, "minor": None, "patch": None},
            }  # fmt: skip
            device_class = "bot"
        else:
            agent = int(draws["agent"][j])
            _, device_class, family, (lo, hi), os_family, (olo, ohi), device = (
                catalogs.HUMAN_AGENTS[agent]
            )
            u = draws["ua_u"][j].tolist()
            major, os_major = lo + int(u[0] * (hi - lo + 1)), olo + int(u[1] * (ohi - olo + 1))
            user_agent = {
                "family": family, "major": str(major), "minor": "0",
                "patch": str(int(u[2] * 201)),
                "device": {"family": device, "major": None, "minor": None, "patch": None},
                "os": {"family": os_family, "major": str(os_major), "minor": str(int(u[3] * 7)),
                       "patch": None},
            }  # fmt: skip
            header = (
                f"Mozilla/5.0 ({os_family} {os_major}; {device}) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) {family.replace(' ', '')}/{major}.0 Safari/537.36"
            )
        logged_in = bool(draws["logged_in"][j])
        rich = bool(draws["rich"][j])
        return Visitor(
            number=number,
            site=catalogs.SITES[int(draws["site"][j])],
            ip=ip,
            user_agent=user_agent,
            ua_header=header,
            device_class=device_class,
            is_bot=bool(draws["bot"][j]),
            language=_LANGUAGES[int(draws["language"][j])],
            user_id=100_000 + number * 16 + int(draws["user_r"][j]) if logged_in else None,
            anonymous_id=f"{int(draws['anonymous'][j]):016x}" if rich and not logged_in else None,
            rich_tracker=rich,
            tz_offset_min=_TZ_OFFSETS[int(draws["tz"][j])],
            key=key,
            const_json=text,
        )

    def sample_visitors(self, n: int) -> list[Visitor]:
        """Draws ``n`` visitors the way a run does and returns them as objects (for tests)."""
        keep, self.keep_visitors = self.keep_visitors, True
        try:
            first = self._grow(n)
            draws = self._draw_visitors(n)
            self._append_columns(draws)
            self._materialise(draws, first, np.arange(n))
            return self.visitors[first:]
        finally:
            self.keep_visitors = keep

    def _grow(self, n: int) -> int:
        """Adds ``n`` empty rows to the visitor table; returns the index of the first."""
        first = len(self.v_const)
        for column in (self.v_const, self.v_key, self.v_keystr, self.v_ip, self.v_device):
            column.extend([None] * n)  # type: ignore[list-item]
        self.visitors.extend([None] * n)  # type: ignore[list-item]
        if first + n > len(self.v_crc):
            grown = np.zeros(max(2 * len(self.v_crc), first + n), dtype=np.int64)
            grown[:first] = self.v_crc[:first]
            self.v_crc = grown
        return first

    def _append_columns(self, draws: dict[str, np.ndarray]) -> None:
        tz = np.asarray(_TZ_OFFSETS, dtype=np.int64)[draws["tz"]]
        self.v_rich = np.concatenate((self.v_rich, draws["rich"]))
        self.v_tz = np.concatenate((self.v_tz, tz))
        self.v_site = np.concatenate((self.v_site, draws["site"]))
        self.v_bot = np.concatenate((self.v_bot, draws["bot"]))

    # --- page views, in bulk ---------------------------------------------------------------

    def _arrivals(self, until_ms: int, visits_per_s: float) -> np.ndarray:
        """Arrival times of new visits in ``[self._next_arrival, until_ms)`` (a Poisson process)."""
        out = []
        t = self._next_arrival
        while t < until_ms:
            expected = (until_ms - t) / 1000 * visits_per_s
            gaps = self.np_rng.exponential(1000 / visits_per_s, int(expected * 1.1) + 16)
            times = t + np.concatenate(([0], np.cumsum(np.maximum(1, gaps.astype(np.int64)))))
            inside = int(np.searchsorted(times, until_ms))
            out.append(times[:inside])
            t = int(times[inside]) if inside < len(times) else int(times[-1])
        self._next_arrival = t
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def _generate(self, until_ms: int, visits_per_s: float) -> None:
        """Draws the visitors arriving before ``until_ms`` and all their page views.

        Every visit of those visitors (returns included) is drawn now; the page views are filed
        into the time slices in which they happen.
        """
        arrivals = self._arrivals(until_ms, visits_per_s)
        n_visitors = len(arrivals)
        if not n_visitors:
            return
        p, rng = self.profile, self.np_rng
        first_visitor = self._grow(n_visitors)
        draws = self._draw_visitors(n_visitors)
        self._append_columns(draws)
        vidx = np.arange(first_visitor, first_visitor + n_visitors)
        bots, sites, rich = draws["bot"], draws["site"], draws["rich"]
        # Visits: the first, then up to three returns, each with probability return_share.
        returns = np.cumprod(rng.random((n_visitors, 3)) < p.return_share, axis=1).sum(axis=1)
        visits = 1 + returns
        visit_owner = np.repeat(np.arange(n_visitors), visits)
        mean = p.mean_pages * np.where(bots[visit_owner], 4.0, 1.0)
        pages = rng.geometric(1.0 / mean)
        n = int(pages.sum())
        owner = np.repeat(visit_owner, pages)  # local visitor of each page view
        visit_start = np.zeros(n, dtype=bool)
        starts = np.concatenate(([0], np.cumsum(pages)[:-1]))
        visit_start[starts] = True
        visit_first = np.zeros(len(visit_owner), dtype=bool)
        visitor_first_visit = np.concatenate(([0], np.cumsum(visits)[:-1]))
        visit_first[visitor_first_visit] = True
        first_of_visitor = starts[visitor_first_visit]
        # Time deltas: think times within a visit, the return gap before a later visit, and the
        # arrival (relative to the first arrival) before the first page view of a visitor.
        median = p.think_median_s / np.where(bots[owner], 8.0, 1.0)
        think = rng.lognormal(np.log(median), p.think_sigma)
        delta = np.maximum(200, (think * 1000).astype(np.int64))
        lo, hi = p.return_after_s
        returning = visit_start.copy()
        returning[first_of_visitor] = False
        delta[returning] = (rng.uniform(lo, hi, int(returning.sum())) * 1000).astype(np.int64)
        base = int(arrivals[0])
        delta[first_of_visitor] = arrivals - base
        total = np.cumsum(delta)
        offset = total[first_of_visitor] - delta[first_of_visitor]
        times = total - np.repeat(offset, np.diff(np.append(first_of_visitor, n))) + base
        # Pages: a Zipf-like choice within the visitor's site.
        site_of = sites[owner]
        u = rng.random(n)
        page = np.empty(n, dtype=np.int64)
        for s, (offset_s, cumulative) in enumerate(self._page_cdf):
            mask = site_of == s
            page[mask] = offset_s + np.minimum(
                np.searchsorted(cumulative, u[mask], side="right"), len(cumulative) - 1
            )
        # Referrer kind of a first page: 0 none, 1 search, 2 social, 3 other; later pages: internal.
        roll = rng.random(n)
        bot_of = bots[owner]
        kind = np.select([roll < 0.35, roll < 0.65, roll < 0.85], [0, 1, 2], 3)
        kind[bot_of] = 0
        rich_of = rich[owner]
        roll2 = rng.random(n)
        event_type = np.where(roll2 < 0.15, 1, np.where(roll2 < 0.25, 2, 0))
        event_type[visit_start | bot_of | ~rich_of] = 0
        extra = np.where(rich_of & (rng.random(n) < p.extra_field_share), rng.integers(1, 4, n), 0)
        query = ~visit_start & (rng.random(n) < 0.05)
        urls = self._url_json[page]
        refs = np.full(n, "null", dtype=object)
        inner = ~visit_start
        refs[inner] = self._url_json[np.roll(page, 1)[inner]]
        # The strings of external referrers and query strings: numbers drawn in bulk, text
        # only for the page views after the start (the warm-up's are never sent).
        words = catalogs.SLUG_WORDS
        word1 = rng.integers(0, len(words), n)
        word2 = (word1 + rng.integers(1, len(words), n)) % len(words)
        number = rng.integers(1000, 100_000, n)
        source = rng.random(n)
        utm = rng.random(n) < 0.5
        utm_source = rng.integers(0, len(catalogs.UTM_SOURCES), n)
        live = times >= self._start_ms
        tables = (
            (), catalogs.SEARCH_REFERRERS, catalogs.SOCIAL_REFERRERS, catalogs.OTHER_REFERRERS
        )  # fmt: skip
        for i in np.flatnonzero(visit_start & (kind > 0) & live).tolist():
            k = int(kind[i])
            num = int(number[i])
            q = f"{words[word1[i]]}+{words[word2[i]]}"
            table = tables[k]
            refs[i] = _quote(table[int(source[i] * len(table))].format(q=q, n=num))
            if k == 2 and utm[i]:
                src, medium = catalogs.UTM_SOURCES[utm_source[i]]
                tail = f'?utm_source={src}&utm_medium={medium}&utm_campaign=c{num % 40}"'
                urls[i] = urls[i][:-1] + tail
        for i in np.flatnonzero(query & live).tolist():
            urls[i] = urls[i][:-1] + f'?q={words[word1[i]]}"'
        self._materialise(draws, first_visitor, np.unique(owner[live]))
        views = Views(
            times, vidx[owner], page, urls, refs, event_type, extra, self._serial + np.arange(n)
        )
        self._serial += n
        self._file(views)

    def _file(self, views: Views) -> None:
        """Puts page views into the bucket of their time slice (those before the start: away)."""
        keep = views.nominal_ms >= self._start_ms
        if not keep.all():
            views = views.take(np.flatnonzero(keep))
        if not len(views.nominal_ms):
            return
        bucket = (views.nominal_ms - self._start_ms) // self._chunk_ms
        order = np.argsort(bucket, kind="stable")
        sorted_buckets = bucket[order]
        edges = np.flatnonzero(np.diff(sorted_buckets)) + 1
        for part in np.split(order, edges):
            self._buckets.setdefault(int(bucket[part[0]]), []).append(views.take(part))

    def view_chunks(
        self, start_ms: int, visits_per_s: float, warmup_ms: int = 0, chunk_ms: int = 60_000
    ) -> Iterator[Views]:
        """Yields page views in nominal-time order, a time slice at a time, forever.

        The caller stops.

        Args:
            start_ms: Nominal time of the first page view yielded, epoch milliseconds.
            visits_per_s: Arrival rate of new visits.
            warmup_ms: Visits start this long before ``start_ms`` and what they do before it is
                not yielded, so traffic is already at its steady rate at the start (people are
                mid-visit, some come back), instead of ramping up from nothing.
            chunk_ms: Length of a time slice.
        """
        self._start_ms, self._chunk_ms = start_ms, max(1, int(chunk_ms))
        self._next_arrival = start_ms - warmup_ms
        self._generate(start_ms, visits_per_s)
        index = 0
        while True:
            self._generate(start_ms + (index + 1) * self._chunk_ms, visits_per_s)
            parts = self._buckets.pop(index, [])
            index += 1
            if not parts:
                continue
            views = Views.concat(parts)
            yield views.take(np.lexsort((views.serial, views.nominal_ms)))

    def expected_events_per_visit(self) -> float:
        """Mean page views per arrival (visits plus return visits), for rate control."""
        p = self.profile
        mean = p.mean_pages * (1 + 3 * p.bot_share)
        returns = sum(p.return_share**k for k in range(1, 4))
        # Calibrated on long runs: the floor in the page count and the returns that fall
        # outside the window make the steady rate about 20 % lower than the plain product.
        return 0.8 * mean * (1 + returns)
