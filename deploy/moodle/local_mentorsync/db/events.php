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

/**
 * Event observers of local_mentorsync.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

// Internal (the default): the observer runs inside the triggering transaction, so the queued
// task commits or rolls back with the change it reports.
$observers = [
    [
        'eventname' => '\core\event\course_module_completion_updated',
        'callback' => '\local_mentorsync\observer::completion_changed',
    ],
    [
        'eventname' => '\core\event\course_completed',
        'callback' => '\local_mentorsync\observer::completion_changed',
    ],
    [
        'eventname' => '\core\event\user_updated',
        'callback' => '\local_mentorsync\observer::user_changed',
    ],
    [
        'eventname' => '\core\event\user_deleted',
        'callback' => '\local_mentorsync\observer::user_changed',
    ],
];
