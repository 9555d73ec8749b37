"""Device backends, one module per protocol backend (as python-can's ``can.interfaces``).

=====================  ==========  ===========================================================
module                 kind        backend
=====================  ==========  ===========================================================
``zsf_stream``         samples     :class:`StreamSampleSource`: ``ZSF/1`` frames over TCP/serial
``modbus_samples``     samples     :class:`ModbusSampleSource`: the Modbus sample ring
``zwr_stream``         records     :class:`StreamRecordSource`: ``ZWR/1`` lines over TCP/serial
``modbus_records``     records     :class:`ModbusRecordSource`: the Modbus record ring
``stream_indicator``   indicator   :class:`StreamIndicator`: XK3190 / Toledo continuous output
``modbus_indicator``   indicator   :class:`ModbusIndicator`: an indicator's register map
``folder_camera``      camera      :class:`FolderCamera`: the images of a folder (a replay)
``video_capture``      camera      :class:`VideoCaptureCamera`: OpenCV file, RTSP, USB
``sim_camera``         camera      :class:`SimulatedCamera`: synthetic frames
=====================  ==========  ===========================================================

Each imports only its kind (:mod:`~zhichao.devices.sample_source`,
:mod:`~zhichao.devices.record_source`, :mod:`~zhichao.devices.weighing_indicator`,
:mod:`~zhichao.devices.camera_source`), its codec and its transport;
:mod:`zhichao.devices.registry` imports them lazily by URL scheme.
"""
