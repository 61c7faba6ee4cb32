<?php
// A classic PHP event-stream script, with one header more: X-SSE-Publish.
// mod_sse (SSEPublishResponses on) parses the body as a browser would and
// publishes every event in it, in order, to the subscribers of the channel;
// the script runs once and ends, no loop, no sleep, no held process.
// publish-stream.php?channel=orders

header('Content-Type: text/event-stream');
header('Cache-Control: no-cache');
header('X-SSE-Publish: ' . ($_GET['channel'] ?? 'demo'));

echo "event: foo\ndata: first\n\n";
flush();

echo "id: order-42\n";
echo "event: order\n";
echo "data: {\"order\":42}\n";
echo "data: second line\n\n";
flush();

echo ": a comment, not published\n";
echo "retry: 2500\ndata: last\n\n";
