<?php
// Publishing by response header: where `SSEPublishResponses on` applies,
// mod_sse takes this response's body as the data of one event, of the type
// X-SSE-Event, on the channel(s) of X-SSE-Publish. The caller (a form post,
// fetch(), curl) gets the body as usual, plus X-SSE-Published: <id>.
// publish-header.php?channel=chat&text=hello

$channel = $_GET['channel'] ?? 'demo';
$text = $_POST['text'] ?? $_GET['text'] ?? 'hello';

header('X-SSE-Publish: ' . $channel);
header('X-SSE-Event: chat');
header('Content-Type: application/json');
echo json_encode(['text' => $text, 'length' => strlen($text)]);
