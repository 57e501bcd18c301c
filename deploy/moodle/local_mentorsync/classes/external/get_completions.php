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

namespace local_mentorsync\external;

use core_external\external_api;
use core_external\external_function_parameters;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;

/**
 * Web-service function local_mentorsync_get_completions: a course's completions changed since a time.
 *
 * Returns, paged, every activity completion of the course (course_modules_completion, with the
 * course module's idnumber) whose timemodified is at or after "since", then every course completion
 * (course_completions) whose timecompleted is. Only ids, states and times: no grades, no text.
 * Undone activity completions are included (state 0), which is how a caller sees an undo.
 *
 * Paging is a keyset cursor: pass the "nextcursor" of one answer to get the next page; an empty
 * "nextcursor" means there is nothing more. Rows changed while paging move to a later position,
 * so they are not missed.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
class get_completions extends external_api {
    /** @var int Rows per page when the caller does not say. */
    public const DEFAULT_LIMIT = 1000;

    /** @var int The most rows one page holds. */
    public const MAX_LIMIT = 5000;

    /** @var string A cursor: phase (a = activities, c = courses), time, row id. */
    private const CURSOR = '/^([ac])-(\d{1,12})-(\d{1,18})$/D';

    /**
     * Parameters.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([
            'courseid' => new external_value(PARAM_INT, 'Course id'),
            'since' => new external_value(PARAM_INT, 'Unix time: completions changed at or after it', VALUE_DEFAULT, 0),
            'cursor' => new external_value(PARAM_ALPHANUMEXT, 'nextcursor of the previous page; empty for the first',
                VALUE_DEFAULT, ''),
            'limit' => new external_value(PARAM_INT, 'Rows per page, 1-' . self::MAX_LIMIT, VALUE_DEFAULT,
                self::DEFAULT_LIMIT),
        ]);
    }

    /**
     * One page of the course's completions changed since a time.
     *
     * @param int $courseid Course id.
     * @param int $since Unix time.
     * @param string $cursor The previous page's nextcursor, or ''.
     * @param int $limit Rows per page.
     * @return array activities, courses, nextcursor, servertime.
     */
    public static function execute(int $courseid, int $since = 0, string $cursor = '', int $limit = self::DEFAULT_LIMIT): array {
        global $DB;
        $params = self::validate_parameters(self::execute_parameters(),
            ['courseid' => $courseid, 'since' => $since, 'cursor' => $cursor, 'limit' => $limit]);
        $courseid = $params['courseid'];
        $since = max(0, $params['since']);
        $limit = $params['limit'];
        if ($limit < 1 || $limit > self::MAX_LIMIT) {
            throw new \invalid_parameter_exception('limit must be between 1 and ' . self::MAX_LIMIT);
        }
        if ($courseid == SITEID) {
            throw new \invalid_parameter_exception('courseid must be a course, not the site');
        }
        $context = \context_course::instance($courseid);
        self::validate_context($context);
        require_capability('local/mentorsync:readcompletions', $context);

        // Where the page starts: phase, then (time, id) strictly after the cursor.
        [$phase, $aftertime, $afterid] = ['a', $since, 0];
        if ($params['cursor'] !== '') {
            if (!preg_match(self::CURSOR, $params['cursor'], $m)) {
                throw new \invalid_parameter_exception('cursor is not a nextcursor of this function');
            }
            [$phase, $aftertime, $afterid] = [$m[1], (int) $m[2], (int) $m[3]];
            if ($aftertime < $since) {
                // A cursor from before "since": start at since.
                [$aftertime, $afterid] = [$since, 0];
            }
        }
        $servertime = time();
        $activities = [];
        $courses = [];
        $nextcursor = '';

        if ($phase === 'a') {
            $sql = "SELECT cmc.id, cmc.userid, cmc.coursemoduleid, cm.idnumber, cmc.completionstate, cmc.timemodified
                      FROM {course_modules_completion} cmc
                      JOIN {course_modules} cm ON cm.id = cmc.coursemoduleid
                     WHERE cm.course = :courseid
                       AND (cmc.timemodified > :t1 OR (cmc.timemodified = :t2 AND cmc.id > :afterid))
                  ORDER BY cmc.timemodified, cmc.id";
            $rows = $DB->get_recordset_sql($sql,
                ['courseid' => $courseid, 't1' => $aftertime, 't2' => $aftertime, 'afterid' => $afterid], 0, $limit);
            foreach ($rows as $row) {
                $activities[] = [
                    'userid' => (int) $row->userid,
                    'cmid' => (int) $row->coursemoduleid,
                    'idnumber' => (string) $row->idnumber,
                    'completionstate' => (int) $row->completionstate,
                    'timemodified' => (int) $row->timemodified,
                ];
                $last = $row;
            }
            $rows->close();
            if (count($activities) === $limit) {
                return self::page($activities, $courses, "a-{$last->timemodified}-{$last->id}", $servertime);
            }
            // Activities done: the rest of the page starts the course completions.
            [$phase, $aftertime, $afterid] = ['c', $since, 0];
        }

        $remaining = $limit - count($activities);
        $sql = "SELECT id, userid, timecompleted
                  FROM {course_completions}
                 WHERE course = :courseid
                   AND timecompleted IS NOT NULL
                   AND (timecompleted > :t1 OR (timecompleted = :t2 AND id > :afterid))
              ORDER BY timecompleted, id";
        $rows = $DB->get_recordset_sql($sql,
            ['courseid' => $courseid, 't1' => $aftertime, 't2' => $aftertime, 'afterid' => $afterid], 0, $remaining);
        foreach ($rows as $row) {
            $courses[] = ['userid' => (int) $row->userid, 'timecompleted' => (int) $row->timecompleted];
            $last = $row;
        }
        $rows->close();
        if (count($courses) === $remaining) {
            $nextcursor = "c-{$last->timecompleted}-{$last->id}";
        }
        return self::page($activities, $courses, $nextcursor, $servertime);
    }

    /**
     * The answer.
     *
     * @param array $activities Activity completions.
     * @param array $courses Course completions.
     * @param string $nextcursor Cursor of the next page, '' at the end.
     * @param int $servertime The server's clock when the page was read.
     * @return array
     */
    private static function page(array $activities, array $courses, string $nextcursor, int $servertime): array {
        return [
            'activities' => $activities,
            'courses' => $courses,
            'nextcursor' => $nextcursor,
            'servertime' => $servertime,
        ];
    }

    /**
     * Return structure: ids, states and times only.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'activities' => new external_multiple_structure(new external_single_structure([
                'userid' => new external_value(PARAM_INT, 'User id'),
                'cmid' => new external_value(PARAM_INT, 'Course module id'),
                'idnumber' => new external_value(PARAM_RAW, 'Course module idnumber (may be empty)'),
                'completionstate' => new external_value(PARAM_INT,
                    '0 incomplete, 1 complete, 2 complete with pass, 3 complete with fail'),
                'timemodified' => new external_value(PARAM_INT, 'When the state last changed'),
            ])),
            'courses' => new external_multiple_structure(new external_single_structure([
                'userid' => new external_value(PARAM_INT, 'User id'),
                'timecompleted' => new external_value(PARAM_INT, 'When the user completed the course'),
            ])),
            'nextcursor' => new external_value(PARAM_ALPHANUMEXT, 'Cursor of the next page; empty when this is the last'),
            'servertime' => new external_value(PARAM_INT, 'The server clock when this page was read'),
        ]);
    }
}
