"""Fixture feeds (written for these tests), as bytes."""
# ruff: noqa: E501

from __future__ import annotations

RSS2 = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0">
<channel>
  <title>Wire: Markets</title>
  <link>https://wire.example/markets</link>
  <language>en-us</language>
  <ttl>30</ttl>
  <item>
    <title>Bluefin Payments discloses data breach affecting 2 million customers</title>
    <link>https://wire.example/a/1?utm_source=rss&amp;utm_medium=feed</link>
    <guid>wire-1</guid>
    <description>&lt;p&gt;The &lt;b&gt;payments&lt;/b&gt; firm said attackers accessed card data.&lt;/p&gt;</description>
    <pubDate>Mon, 23 Nov 2026 14:05:00 GMT</pubDate>
  </item>
  <item>
    <title>Helios Semiconductor beats third-quarter estimates, raises outlook</title>
    <link>https://wire.example/a/2</link>
    <guid>wire-2</guid>
    <description>Revenue rose 18% on data-centre demand.</description>
    <pubDate>Mon, 23 Nov 2026 13:00:00 +0000</pubDate>
  </item>
</channel>
</rss>
"""

RSS1 = b"""<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://rdf.example/">
    <title>RDF wire</title>
    <link>https://rdf.example/</link>
    <description>test</description>
    <items><rdf:Seq><rdf:li resource="https://rdf.example/n/10"/></rdf:Seq></items>
  </channel>
  <item rdf:about="https://rdf.example/n/10">
    <title>Northwind Bancorp raises quarterly dividend by 10%</title>
    <link>https://rdf.example/n/10</link>
    <description>The board approved the increase.</description>
    <dc:date>2026-11-24T09:30:00Z</dc:date>
  </item>
</rdf:RDF>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <title>Atom wire</title>
  <id>urn:atom-wire</id>
  <updated>2026-11-24T10:00:00Z</updated>
  <entry>
    <title type="html">Pinecrest Pharma shares slump as &lt;i&gt;FDA&lt;/i&gt; rejects lead drug</title>
    <link href="https://atom.example/p/7#comments"/>
    <id>urn:atom-wire:7</id>
    <updated>2026-11-24T10:00:00Z</updated>
    <summary>Regulators asked for another trial.</summary>
  </entry>
</feed>
"""

JSONFEED = b"""{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "JSON wire",
  "language": "en",
  "items": [
    {"id": "j-1", "url": "https://json.example/s/1", "title": "Vantage Air cuts full-year guidance on fuel costs",
     "summary": "Shares fell 6% premarket.", "date_published": "2026-11-24T11:00:00Z"},
    {"id": "j-2", "url": "https://json.example/s/2", "content_html": "<p>no title here</p>",
     "date_published": "2026-11-24T11:05:00Z"}
  ]
}"""

INVALID_XML = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Broken</title>
<item><title>Corvid Logistics wins $2 billion defence contract</title><link>https://broken.example/1</link></item>
<item><title>Unclosed & bad <b>markup</title><link>https://broken.example/2</link>
</channel>"""

NOT_A_FEED = b"\x00\x01\x02 this is not a feed at all \xff\xfe"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>Bomb</title>
<item><title>Quarry Mining output rises &lol9;</title><link>https://bomb.example/1</link></item>
</channel></rss>"""


def xxe(secret_path: str) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE rss [ <!ENTITY xxe SYSTEM "file://{secret_path}"> ]>
<rss version="2.0"><channel><title>XXE</title>
<item><title>Meridian Energy update &xxe;</title><link>https://xxe.example/1</link>
<description>&xxe;</description></item>
</channel></rss>""".encode()


WIN1252_AS_UTF8 = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Latin</title>'
    "<item><title>Atlas Retail\u2019s CEO quits \u2014 \u201cpersonal reasons\u201d, caf\u00e9 "
    "chain sale off</title><link>https://latin.example/1</link></item></channel></rss>"
).encode("cp1252")

HTML_TITLES = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Html</title>
<item><title>&lt;script&gt;alert('x')&lt;/script&gt;Meridian &lt;b&gt;Energy&lt;/b&gt; &amp;amp; partners   sign
 LNG deal</title><link>https://html.example/1</link>
<description><![CDATA[<div><style>p{}</style><p>Deal worth <a href="x">$4bn</a></p><script>steal()</script></div>]]></description></item>
</channel></rss>"""


def rss(items: list[tuple[str, str, str]], title: str = "Generated") -> bytes:
    """An RSS 2.0 feed of (guid, title, link) items, newest first."""
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><guid>{g}</guid>"
        f"<pubDate>Tue, 24 Nov 2026 12:{i % 60:02d}:00 GMT</pubDate></item>"
        for i, (g, t, link) in enumerate(items)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{title}'
        f"</title>{body}</channel></rss>"
    ).encode()
