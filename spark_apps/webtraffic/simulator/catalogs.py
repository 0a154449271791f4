"""Static material the simulator draws from: sites and pages, referrers, user agents, IP ranges.

The IP ranges are public allocations of large access networks in many countries (IPv4 and IPv6),
so that a geolocation database answers with a spread of countries; the non-routable ranges cover
what the pipeline must never send to a geolocation API.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """One website (tenant) of the simulated deployment."""

    host: str
    academy_id: int
    weight: float
    sections: tuple[str, ...]


SITES: tuple[Site, ...] = (
    Site("www.learnhub.example", 101, 0.45, ("courses", "blog", "pricing", "about", "careers")),
    Site("shop.learnhub.example", 102, 0.25, ("products", "cart", "checkout", "help")),
    Site("academy.codecamp.example", 201, 0.20, ("tracks", "lessons", "forum", "events")),
    Site("docs.codecamp.example", 202, 0.10, ("guides", "reference", "changelog", "search")),
)

SLUG_WORDS: tuple[str, ...] = (
    "python",
    "spark",
    "kafka",
    "data",
    "streaming",
    "sql",
    "intro",
    "advanced",
    "web",
    "design",
    "cloud",
    "security",
    "analytics",
    "ml",
    "iceberg",
    "airflow",
    "testing",
    "career",
    "java",
    "rust",
    "go",
    "linux",
    "networks",
    "career",
    "writing",
    "finance",
    "marketing",
    "ux",
)

SEARCH_REFERRERS: tuple[str, ...] = (
    "https://www.google.com/search?q={q}",
    "https://www.bing.com/search?q={q}",
    "https://duckduckgo.com/?q={q}",
    "https://search.yahoo.com/search?p={q}",
    "https://yandex.ru/search/?text={q}",
)
SOCIAL_REFERRERS: tuple[str, ...] = (
    "https://www.facebook.com/",
    "https://t.co/{q}",
    "https://www.linkedin.com/feed/",
    "https://www.reddit.com/r/learnprogramming/",
    "https://www.instagram.com/",
    "https://news.ycombinator.com/item?id={n}",
)
OTHER_REFERRERS: tuple[str, ...] = (
    "https://someblog.example.net/best-courses-{n}",
    "https://newsletter.example.com/issue/{n}",
    "https://partner.example.io/links",
)
UTM_SOURCES: tuple[tuple[str, str], ...] = (
    ("google", "cpc"),
    ("facebook", "social"),
    ("newsletter", "email"),
    ("linkedin", "social"),
)

# (share, device class, ua family, (major range), os family, (os major range), device family)
HUMAN_AGENTS: tuple[tuple[float, str, str, tuple[int, int], str, tuple[int, int], str], ...] = (
    (0.30, "desktop", "Chrome", (118, 131), "Windows", (10, 11), "Other"),
    (0.08, "desktop", "Edge", (118, 131), "Windows", (10, 11), "Other"),
    (0.07, "desktop", "Firefox", (115, 133), "Windows", (10, 11), "Other"),
    (0.07, "desktop", "Safari", (16, 18), "Mac OS X", (13, 15), "Mac"),
    (0.05, "desktop", "Chrome", (118, 131), "Mac OS X", (13, 15), "Mac"),
    (0.03, "desktop", "Firefox", (115, 133), "Ubuntu", (22, 24), "Other"),
    (0.16, "mobile", "Mobile Safari", (16, 18), "iOS", (16, 18), "iPhone"),
    (0.12, "mobile", "Chrome Mobile", (118, 131), "Android", (12, 15), "Samsung SM-S918B"),
    (0.03, "mobile", "Samsung Internet", (22, 26), "Android", (12, 15), "Samsung SM-A546B"),
    (0.02, "mobile", "Chrome Mobile", (118, 131), "Android", (12, 15), "Pixel 8"),
    (0.04, "tablet", "Mobile Safari", (16, 18), "iOS", (16, 18), "iPad"),
    (0.03, "tablet", "Chrome", (118, 131), "Android", (12, 14), "Samsung SM-X710"),
)

# (share, ua family, major, device family, raw user-agent header)
BOT_AGENTS: tuple[tuple[float, str, str | None, str, str], ...] = (
    (
        0.35,
        "Googlebot",
        "2",
        "Spider",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ),
    (
        0.15,
        "bingbot",
        "2",
        "Spider",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    ),
    (
        0.10,
        "YandexBot",
        "3",
        "Spider",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    ),
    (
        0.10,
        "AhrefsBot",
        "7",
        "Spider",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    ),
    (
        0.15,
        "HeadlessChrome",
        "124",
        "Other",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/124.0.0.0 Safari/537.36",
    ),
    (0.15, "Python Requests", "2", "Other", "python-requests/2.32.3"),
)

ACCEPT_LANGUAGES: tuple[str, ...] = (
    "en-US,en;q=0.9",
    "en-GB,en;q=0.8",
    "de-DE,de;q=0.9,en;q=0.6",
    "fr-FR,fr;q=0.9",
    "es-ES,es;q=0.9",
    "pt-BR,pt;q=0.9",
    "ja-JP,ja;q=0.9",
    "hi-IN,hi;q=0.8,en;q=0.6",
    "it-IT,it;q=0.9",
    "pl-PL,pl;q=0.9",
    "nl-NL,nl;q=0.9",
    "ko-KR,ko;q=0.9",
)

# Public access-network allocations: (country, weight, CIDR). Weights roughly follow traffic.
PUBLIC_V4: tuple[tuple[str, float, str], ...] = (
    ("US", 8.0, "73.0.0.0/8"),
    ("US", 4.0, "98.192.0.0/10"),
    ("US", 3.0, "24.0.0.0/12"),
    ("DE", 3.0, "79.192.0.0/10"),
    ("DE", 2.0, "84.128.0.0/10"),
    ("GB", 3.0, "86.128.0.0/11"),
    ("GB", 1.5, "81.128.0.0/11"),
    ("FR", 2.5, "90.0.0.0/9"),
    ("FR", 1.0, "86.192.0.0/11"),
    ("ES", 1.5, "83.32.0.0/11"),
    ("IT", 1.5, "79.0.0.0/10"),
    ("NL", 1.0, "84.24.0.0/13"),
    ("PL", 1.0, "83.0.0.0/11"),
    ("SE", 0.5, "90.224.0.0/12"),
    ("IN", 4.0, "117.192.0.0/10"),
    ("IN", 2.0, "106.192.0.0/11"),
    ("JP", 2.5, "126.0.0.0/8"),
    ("KR", 1.0, "211.234.0.0/16"),
    ("CN", 1.5, "36.96.0.0/11"),
    ("BR", 3.0, "177.0.0.0/9"),
    ("BR", 1.0, "189.0.0.0/11"),
    ("MX", 1.5, "187.128.0.0/10"),
    ("AR", 0.8, "181.0.0.0/12"),
    ("CA", 1.5, "142.112.0.0/12"),
    ("AU", 1.5, "1.128.0.0/11"),
    ("RU", 1.0, "95.24.0.0/13"),
    ("TR", 0.8, "88.224.0.0/11"),
    ("NG", 0.8, "105.112.0.0/12"),
    ("ZA", 0.6, "41.0.0.0/11"),
    ("EG", 0.5, "156.192.0.0/11"),
    ("ID", 1.0, "110.136.0.0/13"),
    ("VN", 0.7, "113.160.0.0/11"),
)
PUBLIC_V6: tuple[tuple[str, float, str], ...] = (
    ("US", 4.0, "2601::/20"),
    ("US", 2.0, "2600:1700::/24"),
    ("DE", 2.0, "2003::/19"),
    ("FR", 1.5, "2a01:cb00::/24"),
    ("GB", 1.0, "2a00:23c0::/27"),
    ("IN", 2.5, "2409:4000::/22"),
    ("JP", 1.0, "240b:10::/32"),
    ("BR", 1.5, "2804::/16"),
)
NON_ROUTABLE: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
