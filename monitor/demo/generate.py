"""Writes the demo feed set (deterministic: same output on every run; the output is committed).

    python -m monitor.demo.generate            # rewrites monitor/demo/feeds/ and watchlist.yaml

Every company, person and headline here is fictional, written for the project. Five days of
wire copy (23-27 Nov 2026) over ten companies and the macro tape, in RSS 2.0 and Atom files; a
run of negative stories clusters on Bluefin Payments (a breach, a probe, a downgrade, a CEO exit),
and a few stories are syndicated across feeds with slightly different headlines, as on a real
wire, so that dedup and novelty have something to do.
"""

# ruff: noqa: E501  (headline data reads better unwrapped)

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
DAYS = 5

COMPANIES = [
    # id/ticker, name, aliases, sector noun
    ("BLFN", "Bluefin Payments", ["Bluefin"], "payments processor"),
    ("HLSM", "Helios Semiconductor", ["Helios Semi"], "chipmaker"),
    ("NWB", "Northwind Bancorp", ["Northwind"], "regional lender"),
    ("PCRX", "Pinecrest Pharma", ["Pinecrest"], "drugmaker"),
    ("MRDN", "Meridian Energy", ["Meridian"], "energy producer"),
    ("ATLR", "Atlas Retail Group", ["Atlas Retail"], "department-store chain"),
    ("VNTA", "Vantage Air", [], "airline"),
    ("QRYM", "Quarry Mining", ["Quarry"], "copper miner"),
    ("CRVD", "Corvid Logistics", ["Corvid"], "freight group"),
    ("SLNO", "Solano Foods", ["Solano"], "packaged-food maker"),
]

ROUTINE = [
    (
        "{co} beats third-quarter profit estimates on strong {noun} demand",
        "Adjusted earnings per share came in at ${eps:.2f}, ahead of the ${eps2:.2f} consensus.",
    ),
    (
        "{co} misses quarterly revenue forecasts, shares slide {pct}% premarket",
        "Revenue of ${rev} million fell short of analysts' expectations.",
    ),
    (
        "{co} raises full-year guidance after record quarter",
        "The {noun} now expects annual revenue growth of {pct}% to {pct2}%.",
    ),
    (
        "{co} cuts full-year outlook, citing weaker orders",
        "Management lowered its revenue forecast and flagged softer demand into next year.",
    ),
    (
        "{co} lifts quarterly dividend by {pct}%",
        "The board also approved a ${rev} million share buyback.",
    ),
    (
        "{co} to cut {jobs} jobs in restructuring push",
        "The {noun} said the plan would save about ${rev} million a year.",
    ),
    (
        "{co} agrees to buy smaller rival for ${bn} billion",
        "The all-cash deal is expected to close in the second half of next year.",
    ),
    (
        "Analyst upgrades {co} to 'buy', sees {pct}% upside",
        "The broker cited improving margins and a stronger balance sheet.",
    ),
    (
        "{co} downgraded to 'neutral' on valuation concerns",
        "Shares have rallied {pct}% this year, leaving limited upside, the analyst said.",
    ),
    ("{co} names new chief financial officer", "The appointment takes effect on January 1."),
    (
        "{co} shares hit 52-week high as investors bet on recovery",
        "Trading volume was {pct2} times the 30-day average.",
    ),
    (
        "{co} prices ${bn} billion bond offering",
        "Proceeds will be used to refinance debt maturing in 2028.",
    ),
    (
        "{co} wins multi-year contract worth ${rev} million",
        "The agreement runs through 2030 and includes options to extend.",
    ),
    (
        "{co} faces shareholder lawsuit over disclosures",
        "The complaint alleges the {noun} misled investors about its growth prospects.",
    ),
    (
        "{co} reports IT outage disrupting customer services",
        "The {noun} said systems were being restored and no data had been lost.",
    ),
    (
        "{co} suspends dividend to preserve cash",
        "The {noun} said the move would strengthen its balance sheet.",
    ),
    (
        "{co} opens new plant, adding {jobs} jobs",
        "The ${rev} million facility is due to reach full output in 2028.",
    ),
    (
        "{co} chief executive to retire, successor named",
        "The current president will take over in the spring.",
    ),
    (
        "{co} swings to quarterly loss on one-off charges",
        "The {noun} booked ${rev} million of impairments.",
    ),
    (
        "Activist investor takes stake in {co}, pushes for board changes",
        "The fund said the shares were undervalued by at least {pct}%.",
    ),
    (
        "{co} credit rating raised one notch on lower leverage",
        "The outlook on the rating is stable.",
    ),
    (
        "{co} warns of supply-chain delays into next quarter",
        "The {noun} said shipments of key components had slipped.",
    ),
    (
        "{co} launches ${bn} billion share buyback",
        "The programme will run over the next two years.",
    ),
    (
        "{co} sales growth slows for second straight quarter",
        "Organic growth was {pct}%, below the {pct2}% expected.",
    ),
]

SPECIFIC = {
    "PCRX": [
        (
            "Pinecrest Pharma shares slump as regulator rejects lead drug",
            "The agency asked for an additional late-stage trial.",
        ),
        (
            "Pinecrest Pharma reports positive late-stage data for migraine treatment",
            "The drug met its primary endpoint in a 1,200-patient study.",
        ),
    ],
    "MRDN": [
        (
            "Meridian Energy signs 20-year LNG supply deal with Asian utility",
            "Deliveries are due to start in 2028.",
        ),
        (
            "Fire halts output at Meridian Energy refinery",
            "No injuries were reported; the company did not say when output would resume.",
        ),
    ],
    "VNTA": [
        (
            "Vantage Air cuts guidance as fuel costs bite",
            "The airline now sees full-year margins at the low end of its range.",
        ),
        (
            "Vantage Air pilots vote to strike over pay",
            "The union said walkouts could begin before the holiday season.",
        ),
    ],
    "QRYM": [
        (
            "Quarry Mining suspends operations at Andes mine after accident",
            "Two contractors were injured; regulators have opened an inquiry.",
        ),
    ],
    "ATLR": [
        (
            "Atlas Retail Group to close 40 stores and cut 1,500 jobs",
            "The chain said holiday trading had started slowly.",
        ),
        (
            "Atlas Retail Group CEO steps down after six years",
            "The board has begun a search for a successor.",
        ),
    ],
    "SLNO": [
        (
            "Solano Foods recalls snack products over contamination risk",
            "The recall covers products sold in 14 states.",
        ),
    ],
    "NWB": [
        (
            "Northwind Bancorp sets aside more for bad loans as commercial property sours",
            "Provisions rose to $210 million from $95 million a year earlier.",
        ),
    ],
    "HLSM": [
        (
            "Helios Semiconductor unveils AI accelerator, shares jump",
            "The chip will ship to data-centre customers next quarter.",
        ),
    ],
    "CRVD": [
        (
            "Corvid Logistics explores sale after takeover interest, sources say",
            "The freight group is working with advisers, people familiar with the matter said.",
        ),
    ],
}

# The negative cluster: Bluefin Payments, days 3-5 (index, hour, title, summary).
BLUEFIN = [
    (
        2,
        8,
        "Bluefin Payments discloses data breach affecting 2 million customers",
        "The payments processor said attackers accessed names and partial card numbers.",
    ),
    (
        2,
        11,
        "Bluefin Payments shares tumble 18% after cyberattack disclosure",
        "The stock had its worst day since its 2019 listing.",
    ),
    (
        2,
        15,
        "Regulators open probe into Bluefin Payments data breach",
        "The financial regulator said it was examining the firm's security controls.",
    ),
    (
        3,
        9,
        "Bluefin Payments downgraded to 'sell' as breach costs mount",
        "The analyst cut the price target by 35%, citing remediation and legal costs.",
    ),
    (
        3,
        12,
        "Bluefin Payments faces class action over customer data breach",
        "The suit seeks unspecified damages on behalf of affected cardholders.",
    ),
    (
        3,
        16,
        "Bluefin Payments withdraws full-year guidance",
        "The company said it could not estimate the financial impact of the incident.",
    ),
    (
        4,
        8,
        "Bluefin Payments CEO resigns in wake of data breach",
        "The chief operating officer will serve as interim chief executive.",
    ),
    (
        4,
        13,
        "Rating agency places Bluefin Payments on review for downgrade",
        "The agency cited liquidity risk as merchant clients review their contracts.",
    ),
    (
        4,
        17,
        "Two large merchants suspend contracts with Bluefin Payments",
        "The retailers said they would route card payments through other processors.",
    ),
]

# Stories that a second feed carries with a slightly different headline.
SYNDICATED = {
    "Bluefin Payments discloses data breach affecting 2 million customers": "UPDATE 1-Bluefin Payments discloses data breach affecting two million customers",
    "Bluefin Payments CEO resigns in wake of data breach": "Bluefin Payments CEO resigns in wake of data breach - sources",
    "Atlas Retail Group to close 40 stores and cut 1,500 jobs": "Atlas Retail Group to close 40 stores, cut 1,500 jobs",
    "Pinecrest Pharma shares slump as regulator rejects lead drug": "BRIEF-Pinecrest Pharma shares slump as regulator rejects lead drug",
}

MACRO = [
    (
        "Central bank holds rates steady, signals patience on cuts",
        "Policymakers said inflation remained above target.",
    ),
    (
        "US consumer prices rise {pct_s}% in October, in line with forecasts",
        "Core inflation was unchanged from the previous month.",
    ),
    (
        "Jobless claims fall to {claims},000, lowest in two months",
        "Continuing claims also edged lower.",
    ),
    (
        "Oil climbs {pct_s}% as supply concerns resurface",
        "Brent crude traded near ${oil} a barrel.",
    ),
    (
        "Treasury yields rise as traders pare rate-cut bets",
        "The 10-year yield touched its highest level in three weeks.",
    ),
    (
        "Dollar slips against major currencies ahead of jobs data",
        "Traders awaited Friday's payrolls report for clues on the rate path.",
    ),
    (
        "Manufacturing activity contracts for third straight month",
        "New orders fell to their lowest level since spring.",
    ),
    (
        "Stocks close higher led by technology shares",
        "The benchmark index gained {pct_s}% on the day.",
    ),
    (
        "Global stocks fall as growth worries weigh on sentiment",
        "Cyclical sectors led the decline.",
    ),
    (
        "Retail sales beat expectations as holiday shopping starts early",
        "Online sales grew at the fastest pace this year.",
    ),
]

REGULATORY = [
    (
        "Securities regulator fines {co} ${rev} million over reporting lapses",
        "The {noun} neither admitted nor denied the findings.",
    ),
    (
        "Court dismisses antitrust suit against {co}",
        "The judge ruled that the plaintiffs failed to show harm to competition.",
    ),
    (
        "{co} settles patent dispute for ${rev} million",
        "The settlement ends litigation that began in 2024.",
    ),
    (
        "Competition authority clears {co} acquisition with conditions",
        "The {noun} agreed to divest two units to win approval.",
    ),
    (
        "{co} discloses subpoena from prosecutors over sales practices",
        "The company said it was cooperating with the inquiry.",
    ),
]


@dataclass
class Story:
    title: str
    summary: str
    when: datetime
    slug: str


def _fill(rng: random.Random, text: str, co: str, noun: str) -> str:
    pct = rng.randint(3, 25)
    return text.format(
        co=co,
        noun=noun,
        pct=pct,
        pct2=pct + rng.randint(2, 6),
        pct_s=round(rng.uniform(0.2, 2.4), 1),
        eps=rng.uniform(0.5, 3.5),
        eps2=rng.uniform(0.4, 3.0),
        rev=rng.randint(40, 900),
        bn=round(rng.uniform(1.1, 9.5), 1),
        jobs=rng.choice([250, 400, 600, 800, 1200, 2000]),
        claims=rng.randint(205, 240),
        oil=rng.randint(68, 91),
    )


def _when(rng: random.Random, day: int, hour: int | None = None) -> datetime:
    h = hour if hour is not None else rng.randint(0, 11)
    return START + timedelta(days=day, hours=h, minutes=rng.randint(0, 59))


def _slug(title: str, n: int) -> str:
    words = "".join(c if c.isalnum() else "-" for c in title.lower()).split("-")
    return "-".join(w for w in words if w)[:60] + f"-{n}"


def build(rng: random.Random) -> dict[str, list[Story]]:
    feeds: dict[str, list[Story]] = {
        "markets-wire": [],
        "company-news": [],
        "regulatory": [],
        "macro": [],
    }
    n = 0
    # Each company works through its own shuffled templates: no story repeats within the week.
    decks = {name: rng.sample(ROUTINE, len(ROUTINE)) for _, name, _a, _n in COMPANIES}
    legal = [(c, r) for c in COMPANIES[1:] for r in REGULATORY]
    rng.shuffle(legal)
    for day in range(DAYS):
        for _, name, _aliases, noun in COMPANIES:
            for _ in range(rng.randint(4, 4)):
                title, summary = decks[name].pop()
                n += 1
                feed = rng.choice(["markets-wire", "company-news"])
                t = _fill(rng, title, name, noun)
                feeds[feed].append(
                    Story(t, _fill(rng, summary, name, noun), _when(rng, day), _slug(t, n))
                )
        for title, summary in rng.sample(MACRO, 6):
            n += 1
            t = _fill(rng, title, "", "")
            feeds["macro"].append(
                Story(t, _fill(rng, summary, "", ""), _when(rng, day), _slug(t, n))
            )
        for _ in range(3):
            (_, name, _aliases, noun), (title, summary) = legal.pop()
            n += 1
            t = _fill(rng, title, name, noun)
            feeds["regulatory"].append(
                Story(t, _fill(rng, summary, name, noun), _when(rng, day), _slug(t, n))
            )
    for stories in SPECIFIC.values():
        for title, summary in stories:
            n += 1
            feeds["company-news"].append(
                Story(title, summary, _when(rng, rng.randrange(DAYS)), _slug(title, n))
            )
    for day, hour, title, summary in BLUEFIN:
        n += 1
        feeds["markets-wire"].append(Story(title, summary, _when(rng, day, hour), _slug(title, n)))
    # Syndicated copies land in the other feed 5-40 minutes later, under their own URL.
    for feed_name in ("markets-wire", "company-news"):
        other = "company-news" if feed_name == "markets-wire" else "markets-wire"
        for s in list(feeds[feed_name]):
            if s.title in SYNDICATED:
                n += 1
                copy = SYNDICATED[s.title]
                feeds[other].append(
                    Story(
                        copy,
                        s.summary,
                        s.when + timedelta(minutes=rng.randint(5, 40)),
                        _slug(copy, n),
                    )
                )
    for feed_stories in feeds.values():
        feed_stories.sort(key=lambda s: s.when, reverse=True)
    return feeds


def rss(name: str, title: str, stories: list[Story]) -> str:
    items = "\n".join(
        f"""    <item>
      <title>{escape(s.title)}</title>
      <link>https://demo.riskwire.invalid/{name}/{s.slug}?utm_source=rss</link>
      <guid isPermaLink="false">{name}:{s.slug}</guid>
      <description>{escape(s.summary)}</description>
      <pubDate>{format_datetime(s.when, usegmt=True)}</pubDate>
    </item>"""
        for s in stories
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0">
  <channel>
    <title>{escape(title)}</title>
    <link>https://demo.riskwire.invalid/{name}</link>
    <description>Fictional demo wire for Riskwire</description>
    <language>en</language>
{items}
  </channel>
</rss>
"""


def atom(name: str, title: str, stories: list[Story]) -> str:
    updated = stories[0].when.isoformat().replace("+00:00", "Z") if stories else ""
    entries = "\n".join(
        f"""  <entry>
    <title>{escape(s.title)}</title>
    <link href="https://demo.riskwire.invalid/{name}/{s.slug}"/>
    <id>urn:riskwire-demo:{name}:{s.slug}</id>
    <updated>{s.when.isoformat().replace("+00:00", "Z")}</updated>
    <summary>{escape(s.summary)}</summary>
  </entry>"""
        for s in stories
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <title>{escape(title)}</title>
  <id>urn:riskwire-demo:{name}</id>
  <updated>{updated}</updated>
{entries}
</feed>
"""


def watchlist() -> str:
    lines = [
        "# Demo watchlist: fictional companies of the demo feeds (monitor/demo/generate.py).",
        "entities:",
    ]
    for ticker, name, aliases, _noun in COMPANIES:
        alias = ", ".join(aliases)
        lines.append(f"  - {{id: {ticker}, name: {name}, ticker: {ticker}, aliases: [{alias}]}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    rng = random.Random(20261123)
    feeds = build(rng)
    out = HERE / "feeds"
    out.mkdir(exist_ok=True)
    (out / "markets-wire.rss").write_text(
        rss("markets-wire", "Demo Markets Wire", feeds["markets-wire"]), encoding="utf-8"
    )
    (out / "company-news.atom").write_text(
        atom("company-news", "Demo Company News", feeds["company-news"]), encoding="utf-8"
    )
    (out / "regulatory.rss").write_text(
        rss("regulatory", "Demo Regulatory & Courts", feeds["regulatory"]), encoding="utf-8"
    )
    (out / "macro.atom").write_text(atom("macro", "Demo Macro", feeds["macro"]), encoding="utf-8")
    (HERE / "watchlist.yaml").write_text(watchlist(), encoding="utf-8")
    total = sum(len(v) for v in feeds.values())
    print(f"wrote {total} headlines in {len(feeds)} feeds to {out}")


if __name__ == "__main__":
    main()
