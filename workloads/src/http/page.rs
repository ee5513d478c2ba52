/// The static page at `/`: about 1 KiB, like a small site's front page.
pub(super) const PAGE: &str = "<!DOCTYPE html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<title>migbench guest</title>
<style>body { font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.4; }</style>
</head>
<body>
<h1>migbench guest</h1>
<p>This page is served from inside a virtual machine that may be live-migrating
between two QEMU processes while you read it. The connection you fetched it over
should survive the move: the guest keeps its TCP state, and only the host under it
changes.</p>
<p>Other paths:</p>
<ul>
<li><code>/kv/N</code> reads and rewrites one 4 KiB value of an in-memory store
and answers with its new version and checksum, as JSON. Every request dirties a
page of guest memory, which the migration must copy again.</li>
<li><code>/health</code> answers <code>ok</code>.</li>
</ul>
<p>Only GET and HEAD are served. Keep-alive and pipelining work; idle connections
close after a minute.</p>
</body>
</html>
";
