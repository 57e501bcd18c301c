<?php
// This file is part of the mentorsync Moodle plugin local_mentorsync.
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <http://www.gnu.org/licenses/>.

namespace local_mentorsync\task;

use local_mentorsync\payload;

defined('MOODLE_INTERNAL') || die();

global $CFG;
require_once($CFG->libdir . '/filelib.php');

/**
 * Adhoc task: POST one event to mentorsync as signed JSON.
 *
 * Any failure (no answer, a timeout, a URL blocked by Moodle's cURL security settings, an answer
 * other than 2xx, a secret that is not a whsec_ secret) throws, so Moodle's task manager runs
 * the task again later with its own backoff (faildelay: 1 minute, doubling, at most a day). The
 * webhook-id is kept in the custom data, so a delivery that reached mentorsync but whose answer
 * got lost is dropped there as a duplicate when it is retried.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class deliver_event extends \core\task\adhoc_task {
    /** @var int Seconds to wait for mentorsync when the "timeout" setting is not set. */
    public const DEFAULT_TIMEOUT = 10;

    /**
     * The task's name in the admin's task lists.
     *
     * @return string
     */
    public function get_name() {
        return get_string('taskdeliverevent', 'local_mentorsync');
    }

    /**
     * Deliver the event, or throw so that the task is retried.
     *
     * @throws \moodle_exception When mentorsync did not take the event.
     */
    public function execute() {
        $data = $this->get_custom_data();
        if (!is_object($data) || !isset($data->msgid, $data->event) || !is_string($data->msgid)) {
            // Not made by this plugin's observer: retrying cannot help.
            mtrace('local_mentorsync: task custom data is not an event; dropped');
            return;
        }
        $config = get_config('local_mentorsync');
        $endpoint = trim((string) ($config->endpoint ?? ''));
        if ($endpoint === '') {
            // The admin turned delivery off; mentorsync's periodic sweep covers what happened.
            mtrace("local_mentorsync: no endpoint configured; event {$data->msgid} dropped");
            return;
        }
        $timeout = (int) ($config->timeout ?? 0) ?: self::DEFAULT_TIMEOUT;
        try {
            $body = payload::body(payload::event_from_data((array) $data->event));
            $headers = payload::headers((string) ($config->secret ?? ''), $data->msgid, time(), $body);
        } catch (\InvalidArgumentException $e) {
            // A misconfigured secret: fail (and retry) until the admin fixes it.
            throw new \moodle_exception('deliveryfailed', 'local_mentorsync', '',
                (object) ['msgid' => $data->msgid, 'reason' => $e->getMessage()]);
        }
        $status = $this->post($endpoint, $headers, $body, $timeout);
        mtrace("local_mentorsync: event {$data->msgid} delivered (HTTP {$status})");
    }

    /**
     * POST the body; return the HTTP status when it is 2xx, else throw.
     *
     * @param string $endpoint The webhook URL.
     * @param array $headers Header name => value.
     * @param string $body The exact body bytes.
     * @param int $timeout Seconds for the whole request.
     * @return int The 2xx status.
     * @throws \moodle_exception
     */
    protected function post(string $endpoint, array $headers, string $body, int $timeout): int {
        $curl = new \curl();
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        $curl->setHeader($lines);
        $curl->post($endpoint, $body, [
            'CURLOPT_TIMEOUT' => $timeout,
            'CURLOPT_CONNECTTIMEOUT' => min($timeout, 5),
            // A redirect is a misconfigured endpoint, not something to follow with a POST.
            'CURLOPT_FOLLOWLOCATION' => 0,
        ]);
        $info = $curl->get_info();
        $status = (int) ($info['http_code'] ?? 0);
        if ($curl->get_errno() || $status < 200 || $status > 299) {
            // Never the response body: it is mentorsync's, and may echo what it was sent.
            $reason = $curl->get_errno() ? 'cURL error ' . $curl->get_errno() . ' ' . $curl->error
                : ($status ? "HTTP {$status}" : 'no answer: ' . $curl->error);
            throw new \moodle_exception('deliveryfailed', 'local_mentorsync', '',
                (object) ['msgid' => $headers['webhook-id'], 'reason' => $reason]);
        }
        return $status;
    }
}
