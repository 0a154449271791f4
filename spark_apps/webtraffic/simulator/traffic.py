"""The traffic model: visitors, their visits and page views, in nominal-time order.

Visits arrive as a Poisson process. Each visitor has a site, an IP that stays with them, a user
agent, a language, and is logged in (``user_id``), anonymous with a tracker cookie
(``anonymous_id``, sent by the richer tracker only) or anonymous without one. A visit is a few
page views separated by log-normal think times (a long tail: some gaps exceed the 5-minute
session gap, and some visitors come back later, so visitors have several sessions). Crawlers
browse longer and faster. Everything is drawn from one seeded ``random.Random``.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import Any, TypeVar

from webtraffic.contract import visitor_key
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
class PageView:
    """One event as the tracker would describe it, before its event time is fixed."""

    nominal_ms: int
    visitor: Visitor
    url: str
    referrer: str | None
    path: str
    event_type: str
    extra: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """Every field but ``event_time`` (and ``event_id``), as a dict."""
        v = self.visitor
        payload: dict[str, Any] = {
            "url": self.url,
            "referrer": self.referrer,
            "user_id": v.user_id,
            "academy_id": v.site.academy_id,
            "user_agent": v.user_agent,
            "headers": _headers(v),
            "host": v.site.host,
            "ip": v.ip,
        }
        if v.rich_tracker:
            payload["event_type"] = self.event_type
            if v.anonymous_id:
                payload["anonymous_id"] = v.anonymous_id
        if self.extra:
            payload.update(self.extra)
        return payload

    def encode(self, event_time: str, event_id: str | None) -> bytes:
        """The JSON value, built from the visitor's pre-serialised part (the hot path)."""
        v = self.visitor
        parts = ['{"url":', _quote(self.url), ',"referrer":']
        parts.append("null" if self.referrer is None else _quote(self.referrer))
        parts.append(v.const_json)
        if v.rich_tracker:
            parts.append(',"event_type":"' + self.event_type + '"')
        if event_id is not None:
            parts.append(',"event_id":"' + event_id + '"')
        if self.extra:
            parts.append("," + json.dumps(self.extra, separators=(",", ":"))[1:-1])
        parts.append(',"event_time":"' + event_time + '"}')
        return "".join(parts).encode()


def _headers(visitor: Visitor) -> dict[str, str]:
    headers = {
        "user-agent": visitor.ua_header,
        "accept-language": visitor.language,
        "accept": "text/html,application/xhtml+xml",
    }
    if visitor.device_class in ("mobile", "tablet"):
        headers["sec-ch-ua-mobile"] = "?1"
    return headers


def _const_json(visitor: Visitor) -> str:
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


class TrafficModel:
    """Generates page views in nominal-time order.

    Args:
        rng: The simulator's seeded random source.
        profile: Audience shape.
    """

    def __init__(self, rng: random.Random, profile: TrafficProfile) -> None:
        self.rng = rng
        self.profile = profile
        self._visitors = 0
        self._pages = {site.host: self._page_tree(site) for site in catalogs.SITES}
        self._v4 = self._ranges(catalogs.PUBLIC_V4)
        self._v6 = self._ranges(catalogs.PUBLIC_V6)
        self._private = [ipaddress.ip_network(c) for c in catalogs.NON_ROUTABLE]
        self._humans = WeightedChoice(catalogs.HUMAN_AGENTS, [a[0] for a in catalogs.HUMAN_AGENTS])
        self._bots = WeightedChoice(catalogs.BOT_AGENTS, [a[0] for a in catalogs.BOT_AGENTS])
        self._sites = WeightedChoice(catalogs.SITES, [s.weight for s in catalogs.SITES])

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
            [ipaddress.ip_network(c) for _, _, c in table], [w for _, w, _ in table]
        )

    def _address_in(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        size = network.num_addresses
        offset = self.rng.randrange(1, size - 1) if size > 2 else 0
        return str(network.network_address + offset)

    # --- visitors --------------------------------------------------------------------------

    def new_visitor(self) -> Visitor:
        """Draws a new visitor with stable attributes."""
        rng, p = self.rng, self.profile
        self._visitors += 1
        site = self._sites.draw(rng)
        is_bot = rng.random() < p.bot_share
        if rng.random() < p.non_routable_share:
            ip = self._address_in(rng.choice(self._private))
        elif rng.random() < p.ipv6_share:
            ip = self._address_in(self._v6.draw(rng))
        else:
            ip = self._address_in(self._v4.draw(rng))
        if is_bot:
            _, family, major, device, header = self._bots.draw(rng)
            user_agent: dict[str, Any] = {
                "family": family, "major": major, "minor": None, "patch": None,
                "device": {"family": device, "major": None, "minor": None, "patch": None},
                "os": {"family": "Other", "major": None, "minor": None, "patch": None},
            }  # fmt: skip
            device_class = "bot"
        else:
            _, device_class, family, (lo, hi), os_family, (olo, ohi), device = self._humans.draw(
                rng
            )
            major, os_major = rng.randint(lo, hi), rng.randint(olo, ohi)
            user_agent = {
                "family": family, "major": str(major), "minor": "0",
                "patch": str(rng.randint(0, 200)),
                "device": {"family": device, "major": None, "minor": None, "patch": None},
                "os": {"family": os_family, "major": str(os_major), "minor": str(rng.randint(0, 6)),
                       "patch": None},
            }  # fmt: skip
            header = (
                f"Mozilla/5.0 ({os_family} {os_major}; {device}) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) {family.replace(' ', '')}/{major}.0 Safari/537.36"
            )
        logged_in = not is_bot and rng.random() < p.logged_in_share
        rich = rng.random() < p.rich_tracker_share
        visitor = Visitor(
            number=self._visitors,
            site=site,
            ip=ip,
            user_agent=user_agent,
            ua_header=header,
            device_class=device_class,
            is_bot=is_bot,
            language=rng.choice(catalogs.ACCEPT_LANGUAGES),
            # Unique per visitor (a person on two devices is not modelled).
            user_id=100_000 + self._visitors * 16 + rng.randrange(16) if logged_in else None,
            anonymous_id=f"{rng.getrandbits(64):016x}" if rich and not logged_in else None,
            rich_tracker=rich,
            tz_offset_min=rng.choice((0, 0, 0, 60, 120, -300, -240, 330, 540)),
        )
        visitor.key = visitor_key(visitor.user_id, visitor.anonymous_id, ip, user_agent)
        visitor.const_json = _const_json(visitor)
        return visitor

    def _start_visit(self, visitor: Visitor) -> None:
        mean = self.profile.mean_pages * (4 if visitor.is_bot else 1)
        # Geometric number of pages with the given mean (at least one).
        visitor.pages_left = 1 + int(math.log(1 - self.rng.random()) / math.log(1 - 1 / mean))
        visitor.last_path = None
        visitor.visits += 1

    def _think_ms(self, visitor: Visitor) -> int:
        p = self.profile
        median = p.think_median_s / (8 if visitor.is_bot else 1)
        seconds = self.rng.lognormvariate(math.log(median), p.think_sigma)
        return max(200, int(seconds * 1000))

    # --- page views ------------------------------------------------------------------------

    def _page_view(self, visitor: Visitor, nominal_ms: int) -> PageView:
        rng = self.rng
        first = visitor.last_path is None
        path = self._pages[visitor.site.host].draw(rng)
        host = visitor.site.host
        url = f"https://{host}{path}"
        if first:
            roll = rng.random()
            if visitor.is_bot or roll < 0.35:
                referrer = None
            else:
                q = "+".join(rng.sample(catalogs.SLUG_WORDS, 2))
                n = rng.randint(1000, 99999)
                if roll < 0.65:
                    referrer = rng.choice(catalogs.SEARCH_REFERRERS).format(q=q, n=n)
                elif roll < 0.85:
                    referrer = rng.choice(catalogs.SOCIAL_REFERRERS).format(q=q, n=n)
                    if rng.random() < 0.5:
                        source, medium = rng.choice(catalogs.UTM_SOURCES)
                        url += f"?utm_source={source}&utm_medium={medium}&utm_campaign=c{n % 40}"
                else:
                    referrer = rng.choice(catalogs.OTHER_REFERRERS).format(q=q, n=n)
        else:
            referrer = f"https://{host}{visitor.last_path}"
            if rng.random() < 0.05:
                url += f"?q={rng.choice(catalogs.SLUG_WORDS)}"
        visitor.last_path = path
        event_type = "page_view"
        extra = None
        if visitor.rich_tracker:
            if not first and not visitor.is_bot:
                roll = rng.random()
                event_type = "click" if roll < 0.15 else "scroll" if roll < 0.25 else "page_view"
            if rng.random() < self.profile.extra_field_share:
                extra = {"screen": {"w": rng.choice((390, 1280, 1920)), "h": 844}}
        return PageView(nominal_ms, visitor, url, referrer, path, event_type, extra)

    def page_views(
        self, start_ms: int, visits_per_s: float, warmup_ms: int = 0
    ) -> Iterator[PageView]:
        """Yields page views in nominal-time order, forever (the caller stops).

        Args:
            start_ms: Nominal time of the first page view yielded, epoch milliseconds.
            visits_per_s: Arrival rate of new visits.
            warmup_ms: Visits start this long before ``start_ms`` and what they do before it is
                not yielded, so traffic is already at its steady rate at the start (people are
                mid-visit, some come back), instead of ramping up from nothing.
        """
        rng = self.rng
        heap: list[tuple[int, int, Visitor | None]] = []
        tie = 0
        heapq.heappush(heap, (start_ms - warmup_ms, tie, None))  # None: a new visitor arrives
        while True:
            t, _, visitor = heapq.heappop(heap)
            tie += 1
            if visitor is None:
                visitor = self.new_visitor()
                self._start_visit(visitor)
                gap = rng.expovariate(visits_per_s) * 1000
                heapq.heappush(heap, (t + max(1, int(gap)), tie, None))
                tie += 1
            view = self._page_view(visitor, t)
            if t >= start_ms:
                yield view
            visitor.pages_left -= 1
            if visitor.pages_left > 0:
                heapq.heappush(heap, (t + self._think_ms(visitor), tie, visitor))
            elif visitor.visits < 4 and rng.random() < self.profile.return_share:
                lo, hi = self.profile.return_after_s
                self._start_visit(visitor)
                heapq.heappush(heap, (t + int(rng.uniform(lo, hi) * 1000), tie, visitor))

    def expected_events_per_visit(self) -> float:
        """Mean page views per arrival (visits plus return visits), for rate control."""
        p = self.profile
        mean = p.mean_pages * (1 + 3 * p.bot_share)
        returns = sum(p.return_share**k for k in range(1, 4))
        # Calibrated on long runs: the floor in the page count and the returns that fall
        # outside the window make the steady rate about 20 % lower than the plain product.
        return 0.8 * mean * (1 + returns)
