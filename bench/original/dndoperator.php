#!/usr/bin/php
<?php
// bench/original/dndoperator.php: the original setup's AGI script, reproduced
// for benchmarks (see extensions-original.conf beside it).
//
// Like the original /var/lib/asterisk/agi-bin/dndoperator.php: one HTTP GET
// to the CRM's dynamic class with file_get_contents (no timeout of its own:
// PHP's default_socket_timeout, 60 s), the answer decoded and otherwise
// ignored. Differences, so a benchmark can run it against a loopback CRM
// emulator and time it:
//   - the caller number is URL-encoded ("+" would otherwise arrive as " ");
//   - CRM URL and credentials come from the AGI arguments;
//   - a line "<unix time, microseconds>\trequest\t<uniqueid>\t<number>" is
//     appended to the log file right before the request, and
//     "<time>\tanswer\t<uniqueid>\t<status>" after it;
//   - no phpagi: it reads the agi_* header itself and sends no AGI command.
//
// AGI(dndoperator.php,NUMBER,CRM_URL,CRM_USER,CRM_PASSWORD[,LOG_FILE])
//   CRM_URL e.g. http://127.0.0.1:9088/admin/dynamic.do; empty LOG_FILE: no log.

// Warnings on stdout would reach Asterisk as AGI commands.
ini_set('display_errors', 'stderr');

// The AGI header: "agi_name: value" lines up to a blank line.
$agi = [];
while (($line = fgets(STDIN)) !== false) {
    $line = rtrim($line, "\r\n");
    if ($line === '') {
        break;
    }
    $colon = strpos($line, ':');
    if ($colon !== false) {
        $agi[substr($line, 0, $colon)] = ltrim(substr($line, $colon + 1));
    }
}

function argument(array $argv, int $index, string $default): string
{
    return isset($argv[$index]) && trim($argv[$index]) !== '' ? trim($argv[$index]) : $default;
}

// Unix time with exactly six decimals (microtime(true) is a float).
function now(): string
{
    [$fraction, $seconds] = explode(' ', microtime());
    return $seconds . substr($fraction, 1, 7);
}

function log_line(string $file, string $what, string $uniqueid, string $detail): void
{
    if ($file !== '') {
        file_put_contents($file, now() . "\t$what\t$uniqueid\t$detail\n", FILE_APPEND | LOCK_EX);
    }
}

$phone = argument($argv, 1, '');
$crm_url = argument($argv, 2, 'http://127.0.0.1:9088/admin/dynamic.do');
$user = argument($argv, 3, 'USERNAME');
$password = argument($argv, 4, 'USERPWD');
$log = argument($argv, 5, '');
$uniqueid = $agi['agi_uniqueid'] ?? '';

$url = $crm_url
    . '?action=runDynamicClass&class=ru.bgcrm.dyn.utils.asterisk.AsteriskIn&sub=dndoperator'
    . '&aon=' . rawurlencode($phone)
    . '&authToSession=0'
    . '&j_username=' . rawurlencode($user)
    . '&j_password=' . rawurlencode($password);

log_line($log, 'request', $uniqueid, $phone);
$json = file_get_contents($url);
$data = $json === false ? null : json_decode($json, true);
$status = is_array($data) && isset($data['status']) ? strval($data['status']) : 'failed';
log_line($log, 'answer', $uniqueid, $status);
