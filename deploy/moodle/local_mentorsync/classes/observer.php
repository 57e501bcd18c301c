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

namespace local_mentorsync;

use core\event\base;
use local_mentorsync\task\deliver_event;

/**
 * Event observers: queue one delivery task per event, nothing more.
 *
 * The observer runs inside the learner's request (and inside its database transaction), so it
 * does no network I/O: it copies the event's ids and time into an adhoc task, which cron
 * delivers. If the transaction is rolled back, the task row goes with it.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class observer {
    /** @var int[]|null Course ids resolved from the "courses" setting, per request. */
    private static $courseids = null;

    /** @var string|null The setting those ids were resolved from. */
    private static $coursesetting = null;

    /**
     * A completion event: queued only for the courses the admin chose to report.
     *
     * @param base $event \core\event\course_module_completion_updated or \core\event\course_completed.
     */
    public static function completion_changed(base $event): void {
        if (!self::enabled() || !in_array((int) $event->courseid, self::reported_course_ids(), true)) {
            return;
        }
        self::queue($event);
    }

    /**
     * A user event (updated or deleted): always queued (membership is not per course).
     *
     * @param base $event \core\event\user_updated or \core\event\user_deleted.
     */
    public static function user_changed(base $event): void {
        if (!self::enabled()) {
            return;
        }
        self::queue($event);
    }

    /**
     * Whether delivery is configured: an endpoint and a secret.
     *
     * @return bool
     */
    public static function enabled(): bool {
        $config = get_config('local_mentorsync');
        return trim((string) ($config->endpoint ?? '')) !== '' && trim((string) ($config->secret ?? '')) !== '';
    }

    /**
     * The ids of the courses in the "courses" setting (ids or shortnames, one per line or comma).
     *
     * A token matches a course whose id or shortname it equals, so a numeric shortname works too.
     * Tokens naming no course are ignored.
     *
     * @return int[]
     */
    public static function reported_course_ids(): array {
        global $DB;
        $setting = (string) get_config('local_mentorsync', 'courses');
        if (self::$courseids !== null && self::$coursesetting === $setting) {
            return self::$courseids;
        }
        $tokens = array_values(array_unique(array_filter(array_map('trim', preg_split('/[\s,;]+/', $setting)),
            static fn(string $token): bool => $token !== '')));
        $ids = [];
        if ($tokens) {
            [$namesql, $nameparams] = $DB->get_in_or_equal($tokens, SQL_PARAMS_NAMED, 'sn');
            $numeric = array_map('intval', array_filter($tokens, 'ctype_digit'));
            $where = "shortname $namesql";
            $params = $nameparams;
            if ($numeric) {
                [$idsql, $idparams] = $DB->get_in_or_equal($numeric, SQL_PARAMS_NAMED, 'cid');
                $where .= " OR id $idsql";
                $params += $idparams;
            }
            $ids = array_map('intval', $DB->get_fieldset_select('course', 'id', $where, $params));
        }
        self::$courseids = $ids;
        self::$coursesetting = $setting;
        return $ids;
    }

    /**
     * Forget the resolved course ids (for tests, and after the setting changes in one request).
     */
    public static function reset_caches(): void {
        self::$courseids = null;
        self::$coursesetting = null;
    }

    /**
     * Queue the delivery of one event: its ids and time, and a webhook-id kept for every retry.
     *
     * @param base $event
     */
    private static function queue(base $event): void {
        $data = $event->get_data();
        $kept = [];
        foreach (payload::FIELDS as $field) {
            $kept[$field] = $data[$field] ?? null;
        }
        $task = new deliver_event();
        $task->set_custom_data([
            'msgid' => payload::new_message_id(),
            'event' => payload::event_from_data($kept),
        ]);
        \core\task\manager::queue_adhoc_task($task);
    }
}
