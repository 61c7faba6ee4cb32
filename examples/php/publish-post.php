<?php
// Publishing with one short POST to mod_sse's publish location: no PHP
// extension, only file_get_contents with a stream context. The script does
// not wait for subscribers; mod_sse delivers the event to all of them.
//
// From the command line (a cron job, a queue worker):
//     php publish-post.php http://127.0.0.1:8080/publish <channel> <event> <data>
// From a web request (publish-post.php?channel=...&event=...&data=...), the
// endpoint comes from the SSE_PUBLISH_URL environment variable (SetEnv); a
// path alone (the default, /publish) means this server.
// Prints mod_sse's answer: {"id":"...","subscribers":n}.

/**
 * Publishes one event; returns ['id' => ..., 'subscribers' => n].
 * $channel: a name or a list of names. $event, $id: null for none/the server's.
 */
function sse_publish(string $endpoint, $channel, string $data,
                     ?string $event = null, ?string $id = null): array
{
    $message = ['channel' => $channel, 'data' => $data];
    if ($event !== null) {
        $message['event'] = $event;
    }
    if ($id !== null) {
        $message['id'] = $id;
    }
    $context = stream_context_create(['http' => [
        'method'        => 'POST',
        'header'        => "Content-Type: application/json\r\n",
        'content'       => json_encode($message),
        'ignore_errors' => true,     // a 4xx/5xx body is mod_sse's {"error": ...}
        'timeout'       => 5,
    ]]);
    $reply = @file_get_contents($endpoint, false, $context);
    if ($reply === false) {
        throw new RuntimeException("cannot reach $endpoint");
    }
    // $http_response_header is set by file_get_contents: "HTTP/1.1 200 OK", ...
    $status = (int) explode(' ', $http_response_header[0])[1];
    $answer = json_decode($reply, true);
    if ($status !== 200) {
        throw new RuntimeException("publish refused ($status): " . ($answer['error'] ?? $reply));
    }
    return $answer;
}

if (PHP_SAPI === 'cli') {
    if ($argc < 5) {
        fwrite(STDERR, "usage: php publish-post.php <endpoint> <channel> <event> <data>\n");
        exit(2);
    }
    [, $endpoint, $channel, $event, $data] = $argv;
} else {
    $endpoint = getenv('SSE_PUBLISH_URL') ?: '/publish';
    if ($endpoint[0] === '/') {
        $endpoint = 'http://127.0.0.1:' . $_SERVER['SERVER_PORT'] . $endpoint;
    }
    $channel = $_GET['channel'] ?? 'demo';
    $event = $_GET['event'] ?? null;
    $data = $_POST['data'] ?? $_GET['data'] ?? '';
    header('Content-Type: application/json');
}
try {
    echo json_encode(sse_publish($endpoint, $channel, $data, $event ?: null)), "\n";
} catch (RuntimeException $e) {
    if (PHP_SAPI !== 'cli') {
        http_response_code(502);
    }
    echo json_encode(['error' => $e->getMessage()]), "\n";
    exit(1);
}
