"""``scrapy dashboard``: a live web page of every crawl in one Redis.

* ``server``: the aiohttp application (page, assets, JSON API, token);
* ``data``: what the API answers (``scrapy status``'s snapshot and more);
* ``domains``, ``series``: the domain table and the charts' lines;
* ``actions``: pause, resume and requeue, as the commands do them;
* ``static/``: the page; its charts are drawn by Plotly's own build from
  the ``plotly`` wheel, served by the dashboard (no CDN, works offline).
"""
