<?php
// PHP built-in server router for the e2e suite: every path answers with what PHP saw —
// `$_SERVER` (where PHP apps read headers: `-`, `_`, `.` and space all become `_`, so this is
// where a spoofed `X-User_Sub` or `X-User.Sub` would land: every raw `HTTP_*` key, plus the
// non-`HTTP_` keys identity is read from), `getallheaders()` and `$_COOKIE`. Each request is
// appended to $E2E_HITS before answering.
$ctx = hash_init('sha256');
$len = 0;
$in = fopen('php://input', 'rb');
while (!feof($in)) {
    $chunk = fread($in, 65536);
    if ($chunk === false) break;
    hash_update($ctx, $chunk);
    $len += strlen($chunk);
}
fclose($in);
$uri = $_SERVER['REQUEST_URI'];
$path = parse_url($uri, PHP_URL_PATH);
file_put_contents(getenv('E2E_HITS'), json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'path' => $path,
    'query' => $_SERVER['QUERY_STRING'] ?? '',
]) . "\n", FILE_APPEND | LOCK_EX);
$server = [];
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'HTTP_', 5) === 0) $server[$k] = $v;
}
$env = [];
foreach (['REMOTE_USER', 'AUTH_TYPE', 'PHP_AUTH_USER', 'PHP_AUTH_PW', 'PHP_AUTH_DIGEST'] as $k) {
    if (isset($_SERVER[$k])) $env[$k] = $_SERVER[$k];
}
$headers = [];
foreach (getallheaders() as $k => $v) $headers[] = [$k, $v];
header('Content-Type: application/json');
echo json_encode([
    'framework' => 'php',
    'handler' => strncmp($path, '/admin', 6) === 0 ? 'admin' : 'echo',
    'method' => $_SERVER['REQUEST_METHOD'],
    'path' => $path,
    'raw_path' => $uri,
    'sub' => $_SERVER['HTTP_X_USER_SUB'] ?? null,
    'groups' => $_SERVER['HTTP_X_USER_GROUPS'] ?? null,
    'headers' => $headers,
    'server' => (object) $server,
    'env' => (object) $env,
    'cookie_header' => $_SERVER['HTTP_COOKIE'] ?? null,
    'cookies' => (object) $_COOKIE,
    'body_len' => $len,
    'body_sha256' => hash_final($ctx),
]);
