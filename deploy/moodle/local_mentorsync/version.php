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
 * Version information for local_mentorsync.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$plugin->component = 'local_mentorsync';
$plugin->version   = 2026120100;
// Moodle 4.2 (2023042400): the web-service function uses the core_external\ namespace, which 4.1
// does not have. Every other API used here (events, adhoc tasks, \curl, privacy) is 4.1-safe.
$plugin->requires  = 2023042400;
$plugin->supported = [402, 405];
$plugin->maturity  = MATURITY_BETA;
$plugin->release   = '0.1.0';
