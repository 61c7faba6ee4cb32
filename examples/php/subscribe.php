<?php
// A page that subscribes to a channel with EventSource and shows what
// arrives; its form posts to publish-header.php, whose response mod_sse
// publishes. subscribe.php?channel=chat (stream location: SSE_STREAM_URL,
// default /events).
$channel = $_GET['channel'] ?? 'demo';
$stream = (getenv('SSE_STREAM_URL') ?: '/events') . '?channel=' . rawurlencode($channel);
$publish = 'publish-header.php?channel=' . rawurlencode($channel);
$h = fn(string $s): string => htmlspecialchars($s, ENT_QUOTES);
?><!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Channel <?= $h($channel) ?></title>
</head>
<body>
<h1>Channel <?= $h($channel) ?></h1>
<form id="say" method="post" action="<?= $h($publish) ?>">
  <input name="text" autocomplete="off"> <button>Send</button>
</form>
<ul id="log"></ul>
<script>
const log = (text) => {
  const li = document.createElement('li');
  li.textContent = text;
  document.getElementById('log').append(li);
};
const es = new EventSource(<?= json_encode($stream) ?>);
es.addEventListener('chat', (e) => log(JSON.parse(e.data).text));
es.onmessage = (e) => log(e.data);
document.getElementById('say').addEventListener('submit', async (e) => {
  e.preventDefault();
  // The response is published; the page hears it back on the stream.
  await fetch(e.target.action, { method: 'POST', body: new FormData(e.target) });
  e.target.reset();
});
</script>
</body>
</html>
